import os

# Prometheus' multiprocess directory (core.prometheus) must exist before the first metric is made: each
# metric of a forked child writes a file there. Nothing of the platform is imported before this package.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Load the Celery app when Django starts so that @shared_task binds to it.
from lottery_site.celery import app as celery_app

__all__ = ("celery_app",)
