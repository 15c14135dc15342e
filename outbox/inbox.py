"""The consumer side: an inbox that makes redelivery harmless, dead letters, and counters.

All of it runs in the consumer's transaction, beside the effects of the
messages, so what the database says was received, applied, duplicated or
dead-lettered is always what happened.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.authorization import require_permission
from core.db import sql
from outbox.models import REPLAY_DEAD_LETTER, ConsumerCounter, ConsumerHourCounter, DeadLetter, InboxMessage

logger = logging.getLogger(__name__)


_INBOX_CLAIM_SQL = sql(
    """
INSERT INTO {InboxMessage} (consumer, message_id, received_at)
SELECT %s, unnest(%s::varchar[]), coalesce(%s::timestamptz, now())
ON CONFLICT (consumer, message_id) DO NOTHING
RETURNING message_id
""",
    InboxMessage=InboxMessage,
)

# A dead letter per refused message, once while it is open (a redelivery finds it).
_DEAD_LETTER_SQL = sql(
    """
INSERT INTO {DeadLetter}
    (consumer, topic, partition, "offset", digest, key, value, headers, reason, error, status, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {open}, coalesce(%s::timestamptz, now()))
ON CONFLICT (topic, partition, "offset", digest) WHERE status = {open} DO NOTHING
RETURNING id
""",
    DeadLetter=DeadLetter,
    open=DeadLetter.Status.OPEN,
)


def inbox_claim(*, consumer: str, message_ids: Iterable[str], at: datetime | None = None) -> set[str]:
    """Record message ids as applied (at ``at``, else the transaction's start); return those seen for the
    first time (the others are duplicates)."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_INBOX_CLAIM_SQL, [consumer, ids, at])
        return {row[0] for row in cursor.fetchall()}


@dataclass(frozen=True)
class Refusal:
    """A message that cannot be applied, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    reason: str
    error: str

    @property
    def digest(self) -> str:
        return message_digest(self.key, self.value, self.headers)


def message_digest(key: bytes | None, value: bytes, headers: dict[str, str]) -> str:
    """sha256 over a message's key, value and headers, each part length-prefixed so no two messages collide."""
    digest = hashlib.sha256()
    encoded_headers = json.dumps(headers, sort_keys=True, separators=(",", ":")).encode()
    for part in (b"" if key is None else b"k" + key, value, encoded_headers):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def dead_letters_store(*, consumer: str, refusals: list[Refusal], at: datetime | None = None) -> list[Refusal]:
    """Store refusals as dead letters (created ``at``, else the transaction's start); return those not stored
    before (a redelivery is not new).

    One statement per refusal: refusals are the rare case, and each needs to
    know whether it was already there. A message is identified by its
    (topic, partition, offset) and the digest of its key, value and headers:
    a different message at a reused offset (a recreated topic) is new.
    """
    new: list[Refusal] = []
    with connection.cursor() as cursor:
        for r in refusals:
            cursor.execute(
                _DEAD_LETTER_SQL,
                [
                    consumer,
                    r.topic,
                    r.partition,
                    r.offset,
                    r.digest,
                    r.key,
                    r.value,
                    json.dumps(r.headers),
                    r.reason,
                    r.error,
                    at,
                ],
            )
            if cursor.fetchone() is not None:
                new.append(r)
    return new


@dataclass
class Tally:
    received: int = 0
    applied: int = 0
    duplicate: int = 0
    dead_lettered: int = 0


# Both counters of every partition in the batch, in one statement (one round trip, partitions in order):
# the running totals and those of the hour of the batch's moment (else the transaction's start).
_COUNTERS_SQL = sql(
    """
WITH p AS (
    SELECT * FROM unnest(%(partitions)s::int[], %(received)s::bigint[], %(applied)s::bigint[],
                         %(duplicate)s::bigint[], %(dead_lettered)s::bigint[])
        AS p(partition, received, applied, duplicate, dead_lettered)
), totals AS (
    INSERT INTO {ConsumerCounter} AS c (consumer, topic, partition, received, applied, duplicate, dead_lettered)
    SELECT %(consumer)s, %(topic)s, p.partition, p.received, p.applied, p.duplicate, p.dead_lettered FROM p
    ORDER BY p.partition
    ON CONFLICT (consumer, topic, partition) DO UPDATE SET
        received = c.received + EXCLUDED.received,
        applied = c.applied + EXCLUDED.applied,
        duplicate = c.duplicate + EXCLUDED.duplicate,
        dead_lettered = c.dead_lettered + EXCLUDED.dead_lettered
)
INSERT INTO {ConsumerHourCounter} AS c (consumer, topic, partition, hour, received, applied, duplicate, dead_lettered)
SELECT %(consumer)s, %(topic)s, p.partition, date_trunc('hour', coalesce(%(at)s::timestamptz, now()), 'UTC'),
       p.received, p.applied, p.duplicate, p.dead_lettered
FROM p
ORDER BY p.partition
ON CONFLICT (consumer, topic, partition, hour) DO UPDATE SET
    received = c.received + EXCLUDED.received,
    applied = c.applied + EXCLUDED.applied,
    duplicate = c.duplicate + EXCLUDED.duplicate,
    dead_lettered = c.dead_lettered + EXCLUDED.dead_lettered
""",
    ConsumerCounter=ConsumerCounter,
    ConsumerHourCounter=ConsumerHourCounter,
)
_TALLIED = ("received", "applied", "duplicate", "dead_lettered")


def counters_add(*, consumer: str, topic: str, tallies: dict[int, Tally], at: datetime | None = None) -> None:
    """Add a batch's tallies to the per-partition counters, and to those of the hour of ``at`` (the batch's
    moment, else the transaction's start): one statement, in the caller's transaction."""
    if not tallies:
        return
    partitions = sorted(tallies)
    columns: dict[str, list[int]] = {name: [] for name in _TALLIED}
    for partition in partitions:
        tally = tallies[partition]
        assert tally.received == tally.applied + tally.duplicate + tally.dead_lettered, tally
        for name in _TALLIED:
            columns[name].append(getattr(tally, name))
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNTERS_SQL, {"consumer": consumer, "topic": topic, "at": at, "partitions": partitions, **columns}
        )


def counters_total(*, consumer: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for row in ConsumerCounter.objects.filter(consumer=consumer).values(
        "received", "applied", "duplicate", "dead_lettered"
    ):
        total.update(row)
    return total


# Each consumer registers how to replay its dead letters (pools registers "stakes", in pools/apps.py).
Replayer = Callable[[DeadLetter], str]
REPLAYERS: dict[str, Replayer] = {}


def dead_letters_replay(*, ids: Iterable[int], actor: AbstractUser | None) -> Counter[str]:
    """Replay open dead letters through their consumer, one transaction each; returns outcomes counted.

    A staff ``actor`` needs ``replay_dead_letter``.
    """
    require_permission(actor, REPLAY_DEAD_LETTER)
    outcomes: Counter[str] = Counter()
    for letter_id in ids:
        with transaction.atomic():
            letter = DeadLetter.objects.select_for_update().filter(pk=letter_id, status=DeadLetter.Status.OPEN).first()
            if letter is None:
                outcomes["not open"] += 1
                continue
            replayer = REPLAYERS.get(letter.consumer)
            if replayer is None:
                outcomes["no replayer"] += 1
                continue
            DeadLetter.objects.filter(pk=letter.pk).update(
                status=DeadLetter.Status.REPLAYED, replayed_at=timezone.now()
            )
            outcomes[replayer(letter)] += 1
    return outcomes


# --- Retention ---------------------------------------------------------------

PURGE_BATCH_SIZE = 5000


def inbox_purge(*, now: datetime | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Forget applied message ids older than INBOX_RETENTION_DAYS, in bounded batches; returns how many.

    A message redelivered after its id was forgotten would apply twice, so the
    retention must outlive the consumed topics' own (``retention.ms``) plus the
    longest lag a consumer may have: see docs/kafka.md.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.INBOX_RETENTION_DAYS)
    return _purge(InboxMessage.objects.filter(received_at__lt=cutoff).order_by("received_at"), batch_size)


def dead_letters_purge(*, now: datetime | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete replayed dead letters older than DEAD_LETTER_RETENTION_DAYS; open ones are never purged."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS)
    letters = DeadLetter.objects.filter(status=DeadLetter.Status.REPLAYED, replayed_at__lt=cutoff)
    return _purge(letters.order_by("replayed_at"), batch_size)


def _purge(rows: QuerySet[Any], batch_size: int) -> int:
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        count, _ = rows.model.objects.filter(pk__in=ids).delete()
        deleted += count
    if deleted:
        logger.info("consumer records purged", extra={"table": rows.model._meta.db_table, "deleted": deleted})
    return deleted
