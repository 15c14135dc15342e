"""The outbox API for producers, and the relay's housekeeping.

A service that changes state calls ``publish`` inside its own
``transaction.atomic()``: the event row commits or rolls back with the change,
and after the commit the relay is kicked (coalesced: at most one relay run
waits in the queue). Beat's sweep picks up anything a lost kick left behind.
"""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
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
        headers = _headers()
        write_rows(OutboxEvent, [_row(event, headers) for event in events])
    transaction.on_commit(kick_relay, robust=True)
    return len(events)


def _headers() -> Jsonb:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # W3C traceparent of the active trace, if any
    return Jsonb(carrier)


def _row(event: DomainEvent, headers: Jsonb) -> dict[str, Any]:
    """The outbox row of an event: the one shape, whichever way it is written."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "topic": event.route.topic,
        "message_type": event.route.message_type,
        "key": event.aggregate_id,
        "value": event.to_json(),
        "headers": headers if event.trace is None else Jsonb(event.trace),
        "state": OutboxEvent.State.PENDING,
        "attempts": 0,
        "last_error": "",
        "created_at": event.occurred_at,
    }


# The id an event is built with when the statement that stores it creates its subject (not yet numbered).
# No row has it (ids are positive); its JSON spelling is unique in an envelope.
ID_MARK = -(2**63) + 1
_COLUMNS = ("event_id", "event_type", "topic", "message_type", "key", "value", "headers", "state", "attempts",
            "last_error", "created_at")  # fmt: skip
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class StatementEvent:
    """An event stored by the very statement that creates what it is about: one CTE of that statement.

    ``sql`` is an ``INSERT ... SELECT ... FROM <source>`` storing one outbox
    row per row of ``source`` (a CTE of the caller's statement, usually the
    one that inserted the subject), with the event's ``ID_MARK`` replaced by
    the subject's new id; ``params`` are its named parameters (``outbox_*``),
    to merge with the statement's own. One statement is atomic by itself:
    the event commits with the change, or neither does, with or without a
    transaction around it, and in one round trip. After running it, call
    ``published``.
    """

    sql: str
    params: dict[str, Any]


def statement_event(event: DomainEvent, *, source: str, id_column: str = "id") -> StatementEvent:
    """The CTE body that stores ``event`` (built with ``ID_MARK`` as its subject's id) from ``source``."""
    if not (_IDENTIFIER.fullmatch(source) and _IDENTIFIER.fullmatch(id_column)):
        raise ValueError("source and id_column must be plain SQL identifiers")
    value = event.to_json()
    mark = str(ID_MARK)
    if value.count(mark) != 1:
        raise ValueError("the event must carry ID_MARK exactly once, where its subject's id goes")
    row = _row(event, _headers())
    params = {f"outbox_{column}": row[column] for column in _COLUMNS}
    params["outbox_mark"] = mark
    values = [
        f"replace(%(outbox_value)s, %(outbox_mark)s, {source}.{id_column}::text)"
        if column == "value"
        else f"%(outbox_{column})s"
        for column in _COLUMNS
    ]
    statement = (
        f"INSERT INTO {OutboxEvent._meta.db_table} ({', '.join(_COLUMNS)}) "  # noqa: S608 (names from the code)
        f"SELECT {', '.join(values)} FROM {source}"
    )
    return StatementEvent(sql=statement, params=params)


def published() -> None:
    """After a statement stored a ``statement_event``: the relay is kicked once the change commits."""
    transaction.on_commit(kick_relay, robust=True)


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
    ids = list(event_ids)
    with transaction.atomic():
        count = OutboxEvent.objects.filter(pk__in=ids, state=OutboxEvent.State.FAILED).update(
            state=OutboxEvent.State.PENDING, attempts=0
        )
        if count:
            transaction.on_commit(kick_relay, robust=True)
    logger.info("outbox events replayed", extra={"count": count, "outbox_ids": ids})
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
