"""The Celery application: one for the worker, beat and the web process."""

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import beat_init, celeryd_init, setup_logging, worker_process_init

from core.logs import TaskLogContext

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

app = Celery("lottery_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class _TaskLogContextStep(bootsteps.Step):
    """In a worker: each task's lines carry its task_id and the request_id of the request that queued it."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.receivers = TaskLogContext()
        self.receivers.connect()


app.steps["worker"].add(_TaskLogContextStep)


@setup_logging.connect
def _logging(**kwargs: Any) -> None:
    """The platform's logging (core.logs) in the worker and beat too; connected, Celery sets up none of its own."""
    from django.conf import settings

    from core.logs import configure

    configure(settings.LOGGING)


@celeryd_init.connect
def _worker_named(**kwargs: Any) -> None:
    # The main worker process's own lines (connected, task received) name the service as its children do.
    os.environ.setdefault("OTEL_SERVICE_NAME", "worker")


@worker_process_init.connect
def _worker_started(**kwargs: Any) -> None:
    """Each worker child (prefork) sets up its own telemetry after the fork (core.process)."""
    from core.process import started

    started("worker")


@beat_init.connect
def _beat_started(**kwargs: Any) -> None:
    from core.process import started

    started("beat")
