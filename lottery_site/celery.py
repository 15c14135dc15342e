"""The Celery application: one for the worker, beat and the web process."""

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import (
    beat_init,
    celeryd_init,
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from core import task_metrics
from core.logs import TaskLogContext

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")


app = Celery("lottery_site")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_configure.connect
def _settings_first(sender: Any, **kwargs: Any) -> None:
    """Celery reads its configuration as it parses its command line, before any signal of the worker
    or beat: settings that cannot be read stop it with one log line saying why, not a traceback."""
    from core.process import settings_or_exit

    settings_or_exit()


app.autodiscover_tasks()
task_metrics.connect()  # runs, outcomes and run time of every task, in whichever process runs it


@worker_init.connect
def _worker_main_started(sender: Any, **kwargs: Any) -> None:
    """The worker's main process, before it forks its pool: its metrics port (core.prometheus)."""
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool
    from django.core.exceptions import ImproperlyConfigured

    from core import prometheus
    from core.process import refuse_to_start, service_name

    pool = concurrency.get_implementation(sender.pool_cls)
    prefork = isinstance(pool, type) and issubclass(pool, TaskPool)
    try:
        prometheus.worker_started(prefork=prefork, collectors=[task_metrics.QueueDepthCollector(app)])
    except ImproperlyConfigured as error:
        refuse_to_start(service_name(), error)  # SystemExit: Celery would log any Exception and go on


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
    from core.logs import celery_notices_to_the_log

    # The main worker process's own lines (connected, task received) name the service as its children do,
    # and its notices on shutdown are lines of the log too.
    os.environ.setdefault("OTEL_SERVICE_NAME", "worker")
    celery_notices_to_the_log()


@worker_process_init.connect
def _worker_started(**kwargs: Any) -> None:
    """Each worker child (prefork) sets up its own telemetry after the fork (core.process)."""
    from core.process import started

    started("worker")


@worker_process_shutdown.connect
def _worker_stopped(**kwargs: Any) -> None:
    from core import prometheus

    prometheus.process_exited(os.getpid())


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
