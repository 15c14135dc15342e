"""The outbox API for producers, and the relay's housekeeping.

A service that changes state calls ``publish`` inside its own
``transaction.atomic()``: the event row commits or rolls back with the change,
and after the commit the relay is kicked (coalesced: at most one relay run
waits in the queue). Beat's sweep picks up anything a lost kick left behind.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction
from django.utils import timezone
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from core import tracing
from core.authorization import require_permission
from core.db import write_rows
from outbox.coordination import kick_relay
from outbox.events import AUDIT_EVENT_TYPES, DomainEvent
from outbox.models import REPLAY_OUTBOX_EVENT, OutboxEvent

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 5000


def publish(*events: DomainEvent) -> int:
    """Store events in the outbox, in the caller's transaction, in the given order. Returns how many.

    Must be called inside ``transaction.atomic()``: an event outside one
    could be committed without the change it describes, or the other way round.
    A few rows go in with one INSERT (a ballot's single event: one round
    trip); many go in with COPY, in order (their ids follow it): a batch of
    stakes writes hundreds of events at once, and COPY spends no time on SQL text.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox.publish must run inside the transaction that makes the change")
    if not events:
        return 0
    with tracing.span("outbox publish", _span_attributes(events) if tracing.enabled() else None):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # W3C traceparent of the active trace (this span's), if any
        headers = Jsonb(carrier)
        rows = [
            {
                "event_id": event.id,
                "event_type": event.type,
                "topic": event.route.topic,
                "message_type": event.route.message_type,
                "key": event.aggregate_id,
                "value": event.to_json(),
                "headers": headers if event.trace is None else Jsonb(event.trace),
                "state": OutboxEvent.State.PENDING,
                "created_at": event.occurred_at,
            }
            for event in events
        ]
        write_rows(OutboxEvent, rows)
    transaction.on_commit(kick_relay, robust=True)
    return len(events)


def _span_attributes(events: tuple[DomainEvent, ...]) -> dict[str, Any]:
    if len(events) == 1:
        return {tracing.EVENT_ID: str(events[0].id), tracing.EVENT_TYPE: events[0].type}
    return {  # a batch of stakes publishes hundreds: the first ones name it
        tracing.EVENT_ID: [str(event.id) for event in events[: tracing.MAX_IDS]],
        tracing.EVENT_TYPE: sorted({event.type for event in events}),
        "event.count": len(events),
    }


def replay_failed(*, event_ids: Iterable[int], actor: AbstractUser | None) -> int:
    """Put parked events back in line, attempts reset. Returns how many were parked.

    A staff ``actor`` needs ``replay_outbox_event``.
    """
    require_permission(actor, REPLAY_OUTBOX_EVENT)
    with transaction.atomic():
        count = OutboxEvent.objects.filter(pk__in=list(event_ids), state=OutboxEvent.State.FAILED).update(
            state=OutboxEvent.State.PENDING, attempts=0
        )
        if count:
            transaction.on_commit(kick_relay, robust=True)
    logger.info("outbox events replayed", extra={"count": count})
    return count


def purge_published(*, now: datetime | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete published rows past retention, in bounded batches. Unpublished rows are never touched.

    Award and draw events are kept for OUTBOX_AUDIT_RETENTION_DAYS, the rest
    for OUTBOX_RETENTION_DAYS. Safe to run twice at once.
    """
    now = now or timezone.now()
    ordinary = now - timedelta(days=settings.OUTBOX_RETENTION_DAYS)
    audit = now - timedelta(days=settings.OUTBOX_AUDIT_RETENTION_DAYS)
    deleted = 0
    for cutoff, audited in ((ordinary, False), (audit, True)):
        rows = OutboxEvent.objects.filter(state=OutboxEvent.State.PUBLISHED, published_at__lt=cutoff)
        rows = (
            rows.filter(event_type__in=AUDIT_EVENT_TYPES) if audited else rows.exclude(event_type__in=AUDIT_EVENT_TYPES)
        )
        while True:
            ids = list(rows.order_by("published_at").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = OutboxEvent.objects.filter(pk__in=ids, state=OutboxEvent.State.PUBLISHED).delete()
            deleted += count
    if deleted:
        logger.info("outbox purged", extra={"deleted": deleted})
    return deleted
