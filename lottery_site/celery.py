"""The Celery application: one for the worker, beat and the web process."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

app = Celery("lottery_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _worker_started(**kwargs: Any) -> None:
    """Each worker child (prefork) sets up its own telemetry after the fork (core.process)."""
    from core.process import started

    started("worker")


@worker_init.connect
def _worker_without_children(sender: Any, **kwargs: Any) -> None:
    """A pool that never forks (threads, gevent, eventlet) sends no worker_process_init: set up here instead.

    Prefork and solo send it (prefork in each child, solo in the worker itself);
    prefork's parent must not set anything up, its children would inherit it.
    """
    from celery.concurrency import get_implementation

    if get_implementation(sender.pool_cls).__module__.rsplit(".", 1)[-1] in {"thread", "gevent", "eventlet"}:
        from core.process import started

        started("worker")


@beat_init.connect
def _beat_started(**kwargs: Any) -> None:
    from core.process import started

    started("beat")
