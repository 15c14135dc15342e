"""The Celery application: one for the worker, beat and the web process."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init, worker_process_shutdown

from core import task_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")

app = Celery("lottery_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
task_metrics.connect()  # runs, outcomes and run time of every task, in whichever process runs it


@worker_init.connect
def _worker_main_started(sender: Any, **kwargs: Any) -> None:
    """The worker's main process, before it forks its pool: its metrics port (core.prometheus)."""
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool
    from django.core.exceptions import ImproperlyConfigured

    from core import prometheus

    pool = concurrency.get_implementation(sender.pool_cls)
    prefork = isinstance(pool, type) and issubclass(pool, TaskPool)
    try:
        prometheus.worker_started(prefork=prefork, collectors=[task_metrics.QueueDepthCollector(app)])
    except ImproperlyConfigured as error:
        raise SystemExit(f"worker not started: {error}") from error  # Celery would log any Exception and go on


@worker_process_init.connect
def _worker_started(**kwargs: Any) -> None:
    """Each worker child (prefork) sets up its own telemetry after the fork (core.process)."""
    from core.process import started

    started("worker")


@worker_process_shutdown.connect
def _worker_stopped(**kwargs: Any) -> None:
    from core import prometheus

    prometheus.process_exited(os.getpid())


@beat_init.connect
def _beat_started(**kwargs: Any) -> None:
    from core.process import started

    started("beat")
