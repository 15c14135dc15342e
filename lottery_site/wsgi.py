"""The WSGI application (gunicorn, and runserver through WSGI_APPLICATION)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

# After gunicorn's post_fork this changes nothing; under runserver it is the set-up. Before the
# application is built: the tracing middleware must be in place when Django loads its middleware.
from core.process import settings_or_exit, started
from core.tracing import inbound_context_guard

settings_or_exit()  # a wrong setting: one log line, and gunicorn's master stops (exit status 3)
started("web")

application = inbound_context_guard(get_wsgi_application())  # a caller's trace headers: a link, not a parent
