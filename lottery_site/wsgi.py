"""The WSGI application (gunicorn, and runserver through WSGI_APPLICATION)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

# After gunicorn's post_fork this changes nothing; under runserver it is the set-up. Before the
# application is built: the tracing middleware must be in place when Django loads its middleware.
from core.process import settings_or_exit, started
from core.tracing import inbound_context_guard

settings_or_exit()  # for a server that, unlike gunicorn's master, has not checked them: one log line, not a traceback
started("web")

application = inbound_context_guard(get_wsgi_application())  # a caller's trace headers: a link, not a parent
