"""Prometheus metrics of the outbox.

The backlog and the age of the oldest unpublished event are read from the
database when Prometheus scrapes, so every process reports the same truth
whichever relay did the work. Counters count this process's own work.
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Sum
from prometheus_client import Counter
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outbox.models import ConsumerCounter
from outbox.pipeline import outbox_backlog, pipeline_status

logger = logging.getLogger(__name__)

published_total = Counter("lottery_outbox_published_total", "Outbox events acknowledged by Kafka", ["event_type"])
failed_attempts_total = Counter(
    "lottery_outbox_failed_attempts_total", "Publish attempts that failed on the event itself", ["event_type"]
)
broker_unavailable_total = Counter("lottery_outbox_broker_unavailable_total", "Relay batches stopped by Kafka trouble")


class OutboxCollector(Collector):
    _GAUGES = (
        ("lottery_outbox_backlog", "Outbox events not yet published (pending)"),
        ("lottery_outbox_failed", "Outbox events parked as failed"),
        ("lottery_outbox_oldest_unpublished_age_seconds", "Age of the oldest pending or parked event, 0 when none"),
    )

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not query the database.
        for name, documentation in self._GAUGES:
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[Metric]:
        try:
            backlog = outbox_backlog()
        except DatabaseError as error:
            logger.warning("outbox metrics unavailable", exc_info=error)
            return
        values = (backlog.pending, backlog.parked, backlog.oldest_unpublished_age_seconds)
        for (name, documentation), value in zip(self._GAUGES, values, strict=True):
            yield GaugeMetricFamily(name, documentation, value=float(value))


class ConsumerCollector(Collector):
    """Each consumer's messages by outcome, from the counters its transactions keep.

    received = applied + duplicate + dead_lettered holds here as in the database.
    """

    NAME = "lottery_consumer_messages"
    DOCUMENTATION = "Messages a consumer took from Kafka, by outcome (received, applied, duplicate, dead_lettered)"

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["consumer", "outcome"])

    def collect(self) -> Iterator[Metric]:
        try:
            rows = list(
                ConsumerCounter.objects.values("consumer").annotate(
                    received=Sum("received"),
                    applied=Sum("applied"),
                    duplicate=Sum("duplicate"),
                    dead_lettered=Sum("dead_lettered"),
                )
            )
        except DatabaseError as error:
            logger.warning("consumer metrics unavailable", exc_info=error)
            return
        family = GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["consumer", "outcome"])
        for row in rows:
            for outcome in ("received", "applied", "duplicate", "dead_lettered"):
                family.add_metric([row["consumer"], outcome], float(row[outcome]))
        yield family


_DEGRADED = ("lottery_pipeline_degraded", "1 when the event pipeline is degraded (see /health/ready)")
_HEARTBEAT_AGE = ("lottery_heartbeat_age_seconds", "Seconds since a process (relay, consumer) last beat")


class PipelineCollector(Collector):
    """Whether events are moving, as readiness reports it (outbox.pipeline)."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*_DEGRADED)
        yield GaugeMetricFamily(*_HEARTBEAT_AGE, labels=["process"])

    def collect(self) -> Iterator[Metric]:
        try:
            status = pipeline_status()
        except Exception as error:  # a scrape reports what it can; it must not fail
            logger.warning("pipeline metrics unavailable", exc_info=error)
            return
        yield GaugeMetricFamily(*_DEGRADED, value=float(status.degraded))
        ages = GaugeMetricFamily(*_HEARTBEAT_AGE, labels=["process"])
        for process, age in status.heartbeat_age_seconds.items():
            if age is not None:  # never beaten: no sample, and the pipeline says degraded
                ages.add_metric([process], age)
        yield ages


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(OutboxCollector())
        REGISTRY.register(ConsumerCollector())
        REGISTRY.register(PipelineCollector())
        _registered = True
