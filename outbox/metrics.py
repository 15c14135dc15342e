"""Prometheus metrics of the outbox, the consumers' side, and the event pipeline.

The backlog, the age of the oldest unpublished event, the consumers' counts,
the open dead letters and the heartbeats are read from PostgreSQL and Redis
when Prometheus scrapes web's /metrics (``core.prometheus.PLATFORM``), so
they report the same truth whichever relay or consumer did the work, and
they still report when the relay or the consumer is down. Counters and
histograms count this process's own work; ``ConsumerLag`` is a consumer
process's view of its partitions.
"""

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Sum
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.prometheus import platform_collector
from outbox.models import ConsumerCounter, DeadLetter
from outbox.pipeline import PROCESSES, outbox_backlog, pipeline_status

logger = logging.getLogger(__name__)

published_total = Counter("lottery_outbox_published_total", "Outbox events acknowledged by Kafka", ["event_type"])
failed_attempts_total = Counter(
    "lottery_outbox_failed_attempts_total", "Publish attempts that failed on the event itself", ["event_type"]
)
broker_unavailable_total = Counter("lottery_outbox_broker_unavailable_total", "Relay batches stopped by Kafka trouble")
publish_lag = Histogram(
    "lottery_outbox_publish_lag_seconds",
    "From an event's commit in the outbox to Kafka's acknowledgement of it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
batch_duration = Histogram(
    "lottery_outbox_batch_duration_seconds",
    "One relay batch: claim, send, wait for the acknowledgements, mark, commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class OutboxCollector(Collector):
    _GAUGES = (
        ("lottery_outbox_backlog", "Outbox events not yet published (pending)"),
        ("lottery_outbox_failed", "Outbox events parked as failed"),
        ("lottery_outbox_oldest_unpublished_age_seconds", "Age of the oldest pending or parked event, 0 when none"),
        (
            "lottery_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending event, 0 when none (readiness: stalled past OUTBOX_STALL_SECONDS)",
        ),
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
        values = (
            backlog.pending,
            backlog.parked,
            backlog.oldest_unpublished_age_seconds,
            backlog.oldest_pending_age_seconds,
        )
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
_PROBLEM = ("lottery_pipeline_problem", "1 for each reason readiness gives for a degraded pipeline, 0 for the others")
_HEARTBEAT_AGE = ("lottery_heartbeat_age_seconds", "Seconds since a process (relay, consumer) last beat")
_LIMIT = ("lottery_pipeline_limit_seconds", "The ages past which readiness calls the pipeline degraded, by figure")
# When web cannot read the pipeline's state (PostgreSQL or Redis down for it), the one problem it reports.
UNREADABLE = "pipeline_unreadable"
PROBLEMS = (
    "outbox_stalled",
    "parked_events",
    *(f"{p}_heartbeat_{s}" for p in PROCESSES for s in ("stale", "missing")),
    UNREADABLE,
)


class PipelineCollector(Collector):
    """Whether events are moving, as readiness reports it (outbox.pipeline), and the limits it judges by."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*_DEGRADED)
        yield GaugeMetricFamily(*_PROBLEM, labels=["problem"])
        yield GaugeMetricFamily(*_HEARTBEAT_AGE, labels=["process"])
        yield GaugeMetricFamily(*_LIMIT, labels=["figure"])

    def collect(self) -> Iterator[Metric]:
        limits = GaugeMetricFamily(*_LIMIT, labels=["figure"])
        limits.add_metric(["outbox_stall"], float(settings.OUTBOX_STALL_SECONDS))
        limits.add_metric(["heartbeat_stale"], float(settings.HEARTBEAT_STALE_SECONDS))
        yield limits
        try:
            status = pipeline_status()
        except Exception as error:  # a scrape reports what it can; it must not fail
            # Degraded, and why: with no sample at all the heartbeat and outbox alerts would stay blind.
            logger.warning("pipeline metrics unavailable", exc_info=error)
            yield GaugeMetricFamily(*_DEGRADED, value=1.0)
            unreadable = GaugeMetricFamily(*_PROBLEM, labels=["problem"])
            unreadable.add_metric([UNREADABLE], 1.0)
            yield unreadable
            return
        yield GaugeMetricFamily(*_DEGRADED, value=float(status.degraded))
        problems = GaugeMetricFamily(*_PROBLEM, labels=["problem"])
        found = {reason.split(":", 1)[0] for reason in status.reasons}
        for problem in PROBLEMS:
            problems.add_metric([problem], float(problem in found))
        yield problems
        ages = GaugeMetricFamily(*_HEARTBEAT_AGE, labels=["process"])
        for process, age in status.heartbeat_age_seconds.items():
            if age is not None:  # never beaten: no sample, and the pipeline says degraded
                ages.add_metric([process], age)
        yield ages


class DeadLetterCollector(Collector):
    NAME = "lottery_dead_letters_open"
    DOCUMENTATION = "Dead letters waiting for a fix and a replay (open), by consumer and reason"

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["consumer", "reason"])

    def collect(self) -> Iterator[Metric]:
        try:
            rows = list(
                DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
                .order_by()
                .values("consumer", "reason")
                .annotate(n=Count("id"))
            )
        except DatabaseError as error:
            logger.warning("dead letter metrics unavailable", exc_info=error)
            return
        family = GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["consumer", "reason"])
        for row in rows:
            family.add_metric([row["consumer"], row["reason"]], float(row["n"]))
        yield family


def register() -> None:
    """The outbox's platform gauges, on web's /metrics."""
    for collector in (OutboxCollector(), ConsumerCollector(), PipelineCollector(), DeadLetterCollector()):
        platform_collector(collector)


# --- A consumer's lag ---------------------------------------------------------------


@dataclass
class _Partition:
    end: int | None = None  # the high watermark: the offset the next produced message will get
    committed: int | None = None  # the next offset this consumer will apply (its committed position)
    last_committed_ms: int | None = None  # timestamp of the last message it committed
    oldest_waiting_ms: int | None = None  # timestamp of the oldest message it fetched and has not committed


class ConsumerLag(Collector):
    """How far a consumer process is behind on each partition it holds, in messages and in seconds.

    Messages: the partition's end offset (the high watermark of the last
    fetch) minus the consumer's committed offset. Seconds: 0 when it is not
    behind; otherwise the age of the oldest message it fetched and has not
    committed yet (a batch in hand, or one rolled back), or, between
    batches, of the last message it committed. The consumer loop keeps it
    (``fetched``, ``committed``, ``revoked``); a scrape reads it, so a
    consumer stuck on a batch shows its lag growing.
    """

    MESSAGES = ("lottery_consumer_lag_messages", "Messages of a partition not yet applied by its consumer")
    SECONDS = ("lottery_consumer_lag_seconds", "How long a partition's consumer is behind, 0 when caught up")
    LABELS = ("consumer", "topic", "partition")

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._registered = False

    def register(self) -> None:
        """Served by this process's own port (a consumer process calls this once it consumes)."""
        if not self._registered:
            REGISTRY.register(self)
            self._registered = True

    def fetched(self, consumer: Any, polled: Mapping[Any, list[Any]]) -> None:
        """After a poll: the end offsets of every assigned partition, and the timestamps of what came in."""
        for tp in consumer.assignment():
            state = self._partitions.setdefault((tp.topic, tp.partition), _Partition())
            records = polled.get(tp) or []
            end = consumer.highwater(tp)
            if end is not None:
                state.end = end
            if state.committed is None:
                state.committed = records[0].offset if records else _position(consumer, tp)
            if records and state.oldest_waiting_ms is None:
                state.oldest_waiting_ms = records[0].timestamp

    def committed(self, offsets: Mapping[Any, tuple[int, int]]) -> None:
        """Offsets committed: for each partition, the next offset and the last committed message's timestamp."""
        for tp, (offset, timestamp_ms) in offsets.items():
            state = self._partitions.setdefault((tp.topic, tp.partition), _Partition())
            state.committed, state.last_committed_ms, state.oldest_waiting_ms = offset, timestamp_ms, None

    def revoked(self, partitions: Iterable[Any]) -> None:
        for tp in partitions:
            self._partitions.pop((tp.topic, tp.partition), None)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*self.MESSAGES, labels=self.LABELS)
        yield GaugeMetricFamily(*self.SECONDS, labels=self.LABELS)

    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(*self.MESSAGES, labels=self.LABELS)
        seconds = GaugeMetricFamily(*self.SECONDS, labels=self.LABELS)
        now_ms = time.time() * 1000
        for (topic, partition), state in sorted(self._partitions.items()):
            if state.end is None or state.committed is None:
                continue
            labels = [self.consumer, topic, str(partition)]
            behind = max(0, state.end - state.committed)
            messages.add_metric(labels, float(behind))
            since = state.oldest_waiting_ms or state.last_committed_ms
            if not behind:
                seconds.add_metric(labels, 0.0)
            elif since is not None:
                seconds.add_metric(labels, max(0.0, (now_ms - since) / 1000))
        yield messages
        yield seconds


def _position(consumer: Any, tp: Any) -> int | None:
    """The consumer's position on a partition it just polled nothing from (its committed offset), if it knows it."""
    try:
        position = consumer.position(tp, timeout_ms=0)
    except Exception:  # not known yet (a reset in flight): the next poll tells
        return None
    return None if position is None else int(position)
