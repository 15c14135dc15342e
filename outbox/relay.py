"""The relay: from committed outbox rows to broker acknowledgements.

One batch is one database transaction:

1. claim up to N pending rows in id order, ``FOR UPDATE SKIP LOCKED``, so
   relays running side by side (Celery tasks, ``relay_outbox`` commands) take
   disjoint rows;
2. hold back every row that has an earlier unpublished row of the same key
   outside this batch (claimed by another relay, or parked as failed): per-key
   order never depends on which relay is faster. The same statement as the
   claim finds those rows;
3. send the rest in id order, wait for the broker's acknowledgements, and
   mark exactly the acknowledged rows published, in the same transaction.

A crash between send and mark leaves the rows pending, so they are sent
again: delivery is at least once, and consumers dedupe by ``event-id``. For
the same reason the commit does not wait for the disk: a mark lost with its
WAL is a resend, nothing worse.
"""

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from core import tracing
from core.db import sql
from core.prometheus import observe_many
from outbox import kafka, metrics
from outbox.models import OutboxEvent

logger = logging.getLogger(__name__)

# One statement claims a batch and finds, for each of its keys, the first
# unpublished row of that key that the batch does not hold: rows of the key
# from there on must wait (that row is claimed by another relay, or parked).
#
# - The claim takes up to N pending rows in id order, FOR UPDATE SKIP LOCKED,
#   leaving out rows behind a parked (failed) row of their key: they must wait,
#   and claiming them would fill every batch while other keys starve.
# - Only a row below the batch's last id can block it: each lookup walks the
#   (key, id) index of unpublished rows from the key's oldest and stops at the
#   first hit, so its cost does not grow with the backlog. When no unpublished
#   row below that id lies outside the batch (``crowded`` is false), nothing
#   can block it and the lookups are skipped.
#
# One round trip instead of two; the lookup reads the claim's snapshot, as the
# claim itself does.
_CLAIM_SQL = sql(
    """
WITH claimed AS (
    SELECT id, event_id::text AS event_id, event_type, topic, key, value, message_type, headers::text AS headers,
           extract(epoch FROM created_at)::float8 AS created_at
    FROM {OutboxEvent} e
    WHERE state = {pending}
      AND NOT EXISTS (
          SELECT 1 FROM {OutboxEvent} f WHERE f.key = e.key AND f.state = {failed} AND f.id < e.id
      )
    ORDER BY id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
), extent AS (
    SELECT max(id) AS last_id, array_agg(id) AS ids, count(*) AS claimed FROM claimed
), crowded AS (
    -- Is any unpublished row below the batch's last id not in the batch? Usually not (one relay, nothing
    -- parked): a count over the pending index's first entries and a probe of the parked ones say so.
    SELECT (SELECT count(*) FROM {OutboxEvent} p WHERE p.state = {pending} AND p.id < extent.last_id) >= extent.claimed
           OR EXISTS (SELECT 1 FROM {OutboxEvent} f WHERE f.state = {failed} AND f.id < extent.last_id) AS yes
    FROM extent
), blocker AS (
    SELECT k.key, first.id
    FROM (SELECT DISTINCT key FROM claimed WHERE (SELECT yes FROM crowded)) k
    CROSS JOIN extent
    CROSS JOIN LATERAL (
        SELECT e.id FROM {OutboxEvent} e
        WHERE e.key = k.key AND e.state <> {published} AND e.id < extent.last_id AND NOT (e.id = ANY(extent.ids))
        ORDER BY e.id
        LIMIT 1
    ) first
)
SELECT c.id, c.event_id, c.event_type, c.topic, c.key, c.value, c.message_type, c.headers, c.created_at, b.id
FROM claimed c LEFT JOIN blocker b ON b.key = c.key
ORDER BY c.id
""",
    OutboxEvent=OutboxEvent,
    pending=OutboxEvent.State.PENDING,
    failed=OutboxEvent.State.FAILED,
    published=OutboxEvent.State.PUBLISHED,
)

_MARK_PUBLISHED_SQL = sql(
    "UPDATE {OutboxEvent} SET state = {published}, published_at = %(now)s WHERE id = ANY(%(ids)s)",
    OutboxEvent=OutboxEvent,
    published=OutboxEvent.State.PUBLISHED,
)

# The batch's commit does not wait for its WAL to reach the disk. What it
# records is that the broker has the events: if PostgreSQL crashed before the
# flush (a fraction of a second), the marks are lost, the rows are pending
# again and are sent again, which at-least-once delivery already allows
# (consumers dedupe by event-id). A parked event's attempt count lost the same
# way is taken again. Nothing else is written in this transaction.
_ASYNCHRONOUS_COMMIT_SQL = "SET LOCAL synchronous_commit = off"

_RECORD_FAILURE_SQL = sql(
    """
UPDATE {OutboxEvent}
SET attempts = attempts + 1,
    last_error = %(error)s,
    state = CASE WHEN attempts + 1 >= %(max_attempts)s THEN {failed} ELSE {pending} END
WHERE id = %(id)s
""",
    OutboxEvent=OutboxEvent,
    pending=OutboxEvent.State.PENDING,
    failed=OutboxEvent.State.FAILED,
    published=OutboxEvent.State.PUBLISHED,
)


_UNTRACED = nullcontext()


class RelayBrokerDown(Exception):
    """The broker did not take the batch; nothing unacknowledged was marked. Back off and retry."""


@dataclass(frozen=True)
class RelayBatch:
    claimed: int = 0
    published: int = 0
    failed: int = 0  # events that failed on their own this batch (attempt recorded)
    held_back: int = 0  # behind an earlier unpublished event of their key


@dataclass(slots=True)
class _Row:
    id: int
    event_id: str  # as text: the header's form, with no UUID object in between
    event_type: str
    topic: str
    key: str
    value: str
    message_type: str
    headers: str  # the stored jsonb as text: parsed once per distinct value (_extra_headers)
    created_at: float  # epoch seconds: a float loads far faster than a timestamptz, 500 times a batch
    blocked_from: int | None  # the first unpublished row of the key outside this batch, if any

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            ("messageType", self.message_type.encode()),
            ("event-id", self.event_id.encode()),
            ("content-type", b"application/json"),
            *_extra_headers(self.headers, tracing.kafka_injects()),
        ]


@lru_cache(maxsize=1024)
def _extra_headers(stored: str, send_injects: bool) -> tuple[tuple[str, bytes], ...]:
    """The headers captured at publish time (traceparent), parsed once per distinct value.

    With tracing on, the send writes its own span's traceparent (a child of
    the stored one): the stored one is left out, so a message has only one.
    """
    headers: dict[str, str] = json.loads(stored)
    if send_injects:
        headers = tracing.without_trace_headers(headers)
    return tuple((name, value.encode()) for name, value in headers.items())


@lru_cache(maxsize=1024)
def _stored_context(stored: str) -> Context | None:
    """The trace an event was written in (its stored traceparent), or ``None``."""
    return tracing.context_from(json.loads(stored))


def _batch_span(rows: list[_Row]) -> AbstractContextManager[Span]:
    """The batch's own trace (a relay serves many), linked to the trace of every event it carries."""
    if not tracing.enabled():
        return tracing.span("")
    links = tracing.links(_stored_context(row.headers) for row in rows[: tracing.MAX_LINKS])
    return tracing.span(
        "outbox relay batch",
        {"outbox.claimed": len(rows), tracing.EVENT_ID: [row.event_id for row in rows[: tracing.MAX_IDS]]},
        context=tracing.new_trace(),
        links=links,
    )


def relay_batch(*, batch_size: int | None = None) -> RelayBatch:
    """Publish one batch. Raises ``RelayBrokerDown`` (after committing what was acknowledged)."""
    batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
    started = time.monotonic()
    broker_error: BaseException | None = None
    with ExitStack() as traced:  # the batch's span, once it has rows: to its commit and its log line
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_CLAIM_SQL, [batch_size])
                rows = [_Row(*row) for row in cursor.fetchall()]
                if not rows:
                    return RelayBatch()
            span = traced.enter_context(_batch_span(rows))
            sendable = [r for r in rows if r.blocked_from is None or r.id < r.blocked_from]
            held_back = len(rows) - len(sendable)
            sent, failures, broker_error = _send(sendable)
            held_back += len(sendable) - len(sent) - len(failures)
            published = [r.id for r in sent]
            now = timezone.now()
            by_id = {r.id: r for r in rows}
            with connection.cursor() as cursor:
                cursor.execute(_ASYNCHRONOUS_COMMIT_SQL)
                if published:
                    cursor.execute(_MARK_PUBLISHED_SQL, {"now": now, "ids": published})
                for row_id, error in failures.items():
                    metrics.failed_attempts_total.labels(by_id[row_id].event_type).inc()
                    cursor.execute(
                        _RECORD_FAILURE_SQL,
                        {"id": row_id, "error": error[:2000], "max_attempts": settings.OUTBOX_MAX_ATTEMPTS},
                    )
        for event_type, count in Counter(row.event_type for row in sent).items():
            metrics.published_total.labels(event_type).inc(count)
        # Committed: the events are out. The lag is each event's time in the outbox, commit to acknowledgement.
        acknowledged_at = now.timestamp()
        observe_many(metrics.publish_lag, (max(0.0, acknowledged_at - row.created_at) for row in sent))
        result = RelayBatch(claimed=len(rows), published=len(published), failed=len(failures), held_back=held_back)
        metrics.batch_duration.observe(time.monotonic() - started)
        if span.is_recording():
            span.set_attributes(
                {"outbox.published": result.published, "outbox.failed": result.failed, "outbox.held_back": held_back}
            )
        _log_batch(result, batch_size, [(by_id[row_id], error) for row_id, error in failures.items()], started)
        if broker_error is not None:
            metrics.broker_unavailable_total.inc()
            kafka.recover_producer(broker_error)  # whatever state the producer is in, the next batch has a fresh one
            raise RelayBrokerDown(f"{type(broker_error).__name__}: {broker_error}") from broker_error
    return result


def _log_batch(result: RelayBatch, batch_size: int, failures: list[tuple[_Row, str]], started: float) -> None:
    for row, error in failures:
        logger.warning(
            "outbox event failed",
            extra={"event_id": row.event_id, "event_type": row.event_type, "topic": row.topic, "error": error},
        )
    # A batch that moved nothing (every row held back behind another relay's) is DEBUG: sweeps repeat it.
    logger.log(
        logging.INFO if result.published or result.failed else logging.DEBUG,
        "outbox batch",
        extra={
            "batch_size": batch_size,
            "claimed": result.claimed,
            "published": result.published,
            "failed": result.failed,
            "held_back": result.held_back,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        },
    )


def _send(rows: list[_Row]) -> tuple[list[_Row], dict[int, str], BaseException | None]:
    """Send rows in order; return (acknowledged rows, per-event failures, broker error if any).

    After a row fails on its own, the later rows of its key are not sent in
    this batch: they stay pending behind it. A failure counts against an
    event only when it is the event's own (``kafka.is_message_error``) and the
    broker was otherwise well: with broker trouble in the batch, or several
    events failing and none acknowledged, nobody is blamed and the relay
    backs off instead.
    """
    try:
        producer = kafka.producer()
    except KafkaError as error:  # a new producer cannot bootstrap while the broker is down
        return [], {}, error
    futures, failures, broker_error = _produce(producer, rows)
    if futures:
        try:
            producer.flush(timeout=settings.KAFKA_REQUEST_TIMEOUT_MS * 2 / 1000)
        except KafkaTimeoutError as error:
            broker_error = broker_error or error
    acknowledged, broker_error = _settle(rows, futures, failures, broker_error)
    if broker_error is not None:
        return acknowledged, {}, broker_error  # the broker was unwell: no attempt counts against an event
    if failures:
        kafka.reset_producer()  # the next attempt of a failed event uses a fresh producer
    return acknowledged, failures, broker_error


def _produce(
    producer: Any, rows: list[_Row]
) -> tuple[list[tuple[_Row, FutureRecordMetadata]], dict[int, str], BaseException | None]:
    """Hand rows to the producer in order, a key stopping at its first failure; stop all at broker trouble."""
    futures: list[tuple[_Row, FutureRecordMetadata]] = []
    failures: dict[int, str] = {}
    stopped_keys: set[str] = set()  # keys with a failure: nothing more of them is sent this batch
    # Traced, each send runs in the trace its event was written in: its span is a child of the stored
    # traceparent (not of the batch), and the message carries that span's traceparent.
    traced = tracing.enabled()
    batch = tracing.context_of(trace.get_current_span()) if traced else None
    for row in rows:
        if row.key in stopped_keys:
            continue
        key, value, headers = row.key.encode(), row.value.encode(), row.kafka_headers()
        try:
            with tracing.attached(_stored_context(row.headers) or batch) if traced else _UNTRACED:
                future = producer.send(row.topic, key=key, value=value, headers=headers)
        except (KafkaError, ValueError, TypeError) as error:  # Kafka's verdict on the broker, or on this message
            if kafka.is_broker_trouble(error):
                return futures, failures, error
            failures[row.id] = f"{type(error).__name__}: {error}"
            stopped_keys.add(row.key)
            continue
        futures.append((row, future))
    return futures, failures, None


def _settle(
    rows: list[_Row],
    futures: list[tuple[_Row, FutureRecordMetadata]],
    failures: dict[int, str],
    broker_error: BaseException | None,
) -> tuple[list[_Row], BaseException | None]:
    """The rows to mark published, after the flush; adds the events' own failures to ``failures``.

    Rows are in id order: a key's rows before its first failure that the
    broker took are marked; from the failure on, nothing of the key is.
    """
    key_of = {r.id: r.key for r in rows}
    first_failure: dict[str, int] = {}
    for row_id in sorted(failures):
        first_failure.setdefault(key_of[row_id], row_id)
    acknowledged: list[_Row] = []
    for row, future in futures:
        if row.id > first_failure.get(row.key, row.id):
            continue
        if future.succeeded():
            acknowledged.append(row)
            if logger.isEnabledFor(logging.DEBUG):
                _log_published(row, future.value)
            continue
        problem = future.exception if future.is_done else KafkaTimeoutError("no acknowledgement in time")
        if problem is None or kafka.is_broker_trouble(problem):
            broker_error = broker_error or problem or KafkaTimeoutError("send failed")
        else:
            failures[row.id] = f"{type(problem).__name__}: {problem}"
        first_failure.setdefault(row.key, row.id)  # nothing later of this key is marked ahead of it
    if failures and broker_error is None and not acknowledged and len(failures) > 1:
        broker_error = KafkaError(
            f"{len(failures)} events failed and none was acknowledged: {next(iter(failures.values()))}"
        )
    return acknowledged, broker_error


def _log_published(row: _Row, metadata: Any) -> None:
    logger.debug(
        "outbox event published",
        extra={
            "event_id": row.event_id,
            "event_type": row.event_type,
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
        },
    )


@dataclass
class DrainResult:
    published: int = 0
    failed: int = 0
    batches: int = 0
    more: bool = False  # stopped by the budget or a stop request with work left


def drain(*, budget_seconds: float, should_stop: Callable[[], bool] = lambda: False) -> DrainResult:
    """Publish batches until the outbox is empty, the budget is spent, or ``should_stop()``.

    Raises ``RelayBrokerDown`` from the failing batch (earlier batches stay published).
    """
    deadline = time.monotonic() + budget_seconds
    total = DrainResult()
    while True:
        result = relay_batch()
        total.batches += 1
        total.published += result.published
        total.failed += result.failed
        if result.claimed < settings.OUTBOX_BATCH_SIZE or result.published + result.failed == 0:
            return total  # drained, or everything left waits behind another relay or a parked event
        if should_stop() or time.monotonic() >= deadline:
            total.more = True
            return total


class Backoff:
    """Capped exponential backoff with jitter: after n failures, between half and all of min(cap, base x 2^(n-1)).

    A long-running loop (``relay_outbox``, the stake consumer) keeps its own
    count with ``next_delay``; the Celery relay counts failures in Redis
    (``outbox.coordination``) and asks ``delay_after``.
    """

    def __init__(self, *, base: float = 0.25, cap: float | None = None) -> None:
        self.base = base
        self.cap = cap if cap is not None else float(settings.OUTBOX_BACKOFF_MAX_SECONDS)
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self._delay(self.failures)

    @classmethod
    def delay_after(cls, failures: int) -> float:
        """The delay after ``failures`` failures in a row, counted elsewhere (the Celery relay counts in Redis)."""
        return cls()._delay(failures)

    def _delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(failures - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)

    def reset(self) -> None:
        self.failures = 0
