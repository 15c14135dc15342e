"""The Celery application: one for the worker, beat and the web process."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

app = Celery("lottery_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _worker_started(**kwargs: Any) -> None:
    """Each worker child (prefork) sets up its own telemetry after the fork (core.process)."""
    from core.process import started

    started("worker")


@beat_init.connect
def _beat_started(**kwargs: Any) -> None:
    from core.process import started

    started("beat")
