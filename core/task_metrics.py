"""Celery's tasks in Prometheus: runs by task and outcome, run time, and the depth of the platform's queues.

Counted by Celery's signals in the process that runs the task (a prefork
pool child: the worker's port adds the children up, ``core.prometheus``).
Labels are task names, which the platform's code fixes, and queue names.
"""

import logging
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery, signals
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

tasks_total = Counter(
    "lottery_celery_tasks_total",
    "Task runs by task and outcome (success, failure, retry: a run that asked for a retry, ...)",
    ["task", "outcome"],
)
task_duration = Histogram(
    "lottery_celery_task_duration_seconds",
    "Run time of a task, from its start in a worker to its end, whatever the outcome",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

_started: dict[str, float] = {}


def _prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


def _postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    began = _started.pop(task_id, None) if task_id is not None else None
    name = getattr(task, "name", None) or "unknown"
    tasks_total.labels(name, (state or "unknown").lower()).inc()
    if began is not None:
        task_duration.labels(name).observe(time.monotonic() - began)


def connect() -> None:
    """Count every task run in this process and its forked children (idempotent: dispatch_uid)."""
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="lottery-task-metrics-prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="lottery-task-metrics-postrun")


def platform_queues(app: Celery) -> list[str]:
    """The default queue and every queue the task routes name (``celery`` and ``notifications``)."""
    queues = [app.conf.task_default_queue]
    routes = app.conf.task_routes or {}
    if isinstance(routes, dict):
        for route in routes.values():
            queue = route.get("queue") if isinstance(route, dict) else None
            if queue and queue not in queues:
                queues.append(queue)
    return queues


class QueueDepthCollector(Collector):
    """Messages waiting in each of the platform's queues on the broker, read at scrape time.

    Tasks a worker has already taken (prefetched, or held for their ``eta``,
    as lottery timers are) are not waiting in the queue and are not counted.
    """

    NAME = "lottery_celery_queue_length"
    DOCUMENTATION = "Tasks waiting in a Celery queue on the broker (not yet taken by a worker)"

    def __init__(self, app: Celery) -> None:
        self.app = app

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["queue"])

    def collect(self) -> Iterator[Metric]:
        from kombu.exceptions import ChannelError

        family = GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["queue"])
        try:
            with self.app.connection_for_read() as connection:
                # A broker that is down fails this gauge fast, not the scrape.
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
                channel: Any = connection.default_channel
                for queue in platform_queues(self.app):
                    try:
                        waiting = channel.queue_declare(queue=queue, passive=True).message_count
                    except ChannelError:  # no such queue yet: nothing was ever sent to it, or it is empty (Redis)
                        waiting = 0
                    family.add_metric([queue], float(waiting))
        except Exception as error:  # a scrape reports what it can; it must not fail
            logger.warning("queue depths unavailable", exc_info=error)
            return
        yield family
