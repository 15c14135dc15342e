"""The WSGI application (gunicorn, and runserver through WSGI_APPLICATION)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

application = get_wsgi_application()

# After gunicorn's post_fork this changes nothing; under runserver it is the set-up.
from core.process import started  # noqa: E402

started("web")
