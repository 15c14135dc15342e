"""SMS notifications: written with their reason, sent after commit, never twice.

A notification is created in the transaction that gives it its reason: the
winner's in the award's own (``award_notifications_create``, which
``lifecycle.services.lottery_close`` calls after the draw), a drop's "not
selected" ones in its close (``not_selected_notifications_create``). Each is
written once: unique per (kind, award) or (kind, lottery, player), inserted
with ``ON CONFLICT DO NOTHING``. After commit a task sends it.

Sending is guarded in the database, not by the task queue. A worker takes
a message with one conditional UPDATE (``pending`` and due, or ``sending``
with its lease run out) that moves it to ``sending`` with a lease of
``SMS_SEND_LEASE_SECONDS``. No transaction is held during the gateway
call. So two workers racing, or a task redelivered after Redis's visibility
timeout, find nothing left to take, and a message left in ``sending`` by a
dead worker is taken again after its lease, with the same idempotency key
(the notification's id): the gateway's dedupe decides, and a key it has
seen counts as sent. A failed attempt goes back to ``pending`` with a capped
exponential backoff, and after ``SMS_MAX_ATTEMPTS`` attempts becomes
``failed``. Staff can send a failed one again (``notification_resend``).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core import tracing
from core.authorization import require_permission
from core.db import sql
from core.live import live
from draws.models import Draw, LotteryAward
from entries.models import Ballot, ConsentSource, Player
from entries.phones import mask_phone
from entries.services import sms_opt_out
from lotteries.models import Lottery
from notifications import metrics
from notifications.errors import NotificationNotFailed, NotificationNotFound
from notifications.gateway import DeliveryFailed, KeyAlreadySeen, OutgoingSms, SendResult, SmsRefused, gateway
from notifications.messages import not_selected_body, winner_body
from notifications.models import RESEND_NOTIFICATION, Broadcast, Notification, idempotency_key

logger = logging.getLogger(__name__)

# Kinds sent in batches (one task and one gateway call per SMS_BROADCAST_BATCH messages); the others one by one.
BATCHED_KINDS = (Notification.Kind.NOT_SELECTED, Notification.Kind.BROADCAST)


# --- Creating ------------------------------------------------------------------


def award_notifications_create(*, award_ids: Sequence[int], now: datetime) -> list[int]:
    """A winner SMS per award whose player has a phone number; returns the notifications' ids.

    Runs in the caller's transaction, the one that created the awards (a
    draw, a promoted alternate). An award that already has its notification
    gets no second one. The sends are queued when the transaction commits.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("award_notifications_create must run in the awards' own transaction")
    awards = list(
        LotteryAward.objects.filter(pk__in=award_ids)
        .exclude(player__phone_number="")
        .select_related("player", "lottery")
    )
    Notification.objects.bulk_create(
        [
            Notification(
                kind=Notification.Kind.WINNER,
                lottery=award.lottery,
                player=award.player,
                award=award,
                recipient=award.player.phone_number,
                body=winner_body(award, award.lottery),
                next_attempt_at=now,
                queued_at=now,
                created_at=now,
                updated_at=now,
            )
            for award in awards
        ],
        ignore_conflicts=True,
    )
    ids = list(
        Notification.objects.filter(
            kind=Notification.Kind.WINNER, award_id__in=[a.pk for a in awards], state=Notification.State.PENDING
        ).values_list("id", flat=True)
    )
    transaction.on_commit(lambda: _queue_sends(ids), robust=True)
    return ids


_NOT_SELECTED_SQL = sql(
    """
INSERT INTO {Notification} (kind, lottery_id, player_id, award_id, recipient, body, state, attempts,
                            next_attempt_at, queued_at, gateway_message_id, last_error, created_at, updated_at)
SELECT {not_selected}, %(lottery)s, p.id, NULL, p.phone_number, %(body)s, {pending}, 0,
       %(now)s, %(now)s, '', '', %(now)s, %(now)s
FROM (SELECT DISTINCT player_id FROM {Ballot} WHERE lottery_id = %(lottery)s AND status = {valid}) entrant
JOIN {Player} p ON p.id = entrant.player_id
WHERE p.phone_number <> ''
  AND NOT EXISTS (SELECT 1 FROM {LotteryAward} a WHERE a.lottery_id = %(lottery)s AND a.player_id = p.id)
  AND p.id <> ALL(%(waiting)s::bigint[])
ON CONFLICT DO NOTHING
""",
    Notification=Notification,
    Ballot=Ballot,
    Player=Player,
    LotteryAward=LotteryAward,
    not_selected=Notification.Kind.NOT_SELECTED,
    pending=Notification.State.PENDING,
    valid=Ballot.Status.VALID,
)


def not_selected_notifications_create(
    *, lottery: Lottery, now: datetime, waiting_player_ids: Sequence[int] = ()
) -> int:
    """A "not selected" SMS to each entrant of a drawn lottery who won nothing; returns how many were written.

    One statement, in the caller's transaction (the close, under the
    lottery's row lock, after the awards). Entrants are the players with a
    valid ballot and a phone number; ``waiting_player_ids`` (a drop's
    alternates, told when their turn is settled) are left out. A player
    already told gets no second message. Sent in batches once committed.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("not_selected_notifications_create must run in the close's own transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            _NOT_SELECTED_SQL,
            {
                "lottery": lottery.pk,
                "body": not_selected_body(lottery),
                "now": now,
                "waiting": list(waiting_player_ids),
            },
        )
        created: int = cursor.rowcount
    if created:
        lottery_id, kind, chains = lottery.pk, Notification.Kind.NOT_SELECTED, _chains(created)
        transaction.on_commit(lambda: _queue_batch(lottery_id, kind, chains=chains), robust=True)
    return created


_BROADCAST_SQL = """
INSERT INTO {table} (kind, lottery_id, player_id, award_id, recipient, body, state, attempts,
                     next_attempt_at, queued_at, gateway_message_id, last_error, created_at, updated_at)
SELECT %s, %s, player.id, NULL, player.phone_number, %s, %s, 0, %s, %s, '', '', %s, %s
FROM ({players}) AS player(id, phone_number)
ON CONFLICT DO NOTHING
"""


def broadcast_create(*, lottery: Lottery, players: "QuerySet[Player]", body: str, now: datetime) -> Broadcast:
    """One SMS to each of ``players`` with a phone number (a drop's opted-in players, at its opening); once per
    lottery: a second call returns the first broadcast and writes nothing.

    Runs in the caller's transaction (the opening's). The messages are
    written by one ``INSERT ... SELECT`` over the players' query, never
    loaded into Python, and sent in batches of SMS_BROADCAST_BATCH by
    SMS_BATCH_CHAINS chains of tasks once committed; the broadcast records
    its progress as they go.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("broadcast_create must run in its reason's own transaction")
    existing = Broadcast.objects.select_for_update().filter(lottery=lottery).first()
    if existing is not None:
        return existing
    query, query_params = (
        players.exclude(phone_number="").order_by().values_list("id", "phone_number").query.sql_with_params()
    )
    statement = _BROADCAST_SQL.format(table=connection.ops.quote_name(Notification._meta.db_table), players=query)
    kind, pending = str(Notification.Kind.BROADCAST), str(Notification.State.PENDING)
    with connection.cursor() as cursor:
        cursor.execute(statement, [kind, lottery.pk, body, pending, now, now, now, now, *query_params])
        total: int = cursor.rowcount
    broadcast = Broadcast.objects.create(
        lottery=lottery, body=body, total=total, created_at=now, finished_at=None if total else now
    )
    if total:
        lottery_id, chains = lottery.pk, _chains(total)
        transaction.on_commit(lambda: _queue_batch(lottery_id, kind, chains=chains), robust=True)
    logger.info(
        "broadcast of lottery %s: %s SMS to send",
        lottery.pk,
        total,
        extra={"lottery_id": lottery.pk, "broadcast_id": broadcast.pk, "messages": total},
    )
    return broadcast


def draw_notifications_create(*, lottery: Lottery, draw: Draw, now: datetime) -> None:
    """What a drawn lottery tells its players: its winners, and for a drop the entrants not selected.

    In the draw's transaction (``lifecycle.services.lottery_close``), under the lottery's row lock.
    """
    award_notifications_create(award_ids=list(draw.awards.values_list("id", flat=True)), now=now)
    if lottery.kind == Lottery.Kind.DROP:
        # The alternates are still waiting: an alternate promoted later gets a winner SMS then.
        alternates = Ballot.objects.filter(pk__in=draw.alternate_ballot_ids).values_list("player_id", flat=True)
        not_selected_notifications_create(lottery=lottery, now=now, waiting_player_ids=list(alternates))


def promoted_alternate_notify(award: LotteryAward, now: datetime) -> None:
    """A winner SMS to an alternate promoted in a forfeited award's place (``draws.services.ON_PROMOTED``)."""
    award_notifications_create(award_ids=[award.pk], now=now)


def _queue_sends(ids: Sequence[int]) -> None:
    from notifications.tasks import send_notification  # the tasks call these services

    for notification_id in ids:
        send_notification.delay(notification_id)


def _queue_batch(lottery_id: int, kind: str, *, chains: int = 1) -> None:
    """Queue ``chains`` batch tasks for a lottery's messages of a kind; each hands on to a fresh one while it finds
    a full batch, and SKIP LOCKED keeps their batches disjoint."""
    from notifications.tasks import send_notification_batch

    for _ in range(chains):
        send_notification_batch.delay(lottery_id, kind)


def _chains(messages: int) -> int:
    return max(1, min(settings.SMS_BATCH_CHAINS, -(-messages // settings.SMS_BROADCAST_BATCH)))


# --- Sending -------------------------------------------------------------------

# Taking a message: pending and past its backoff, or sending with its lease run out (its worker died).

_TAKE_ONE_SQL = sql(
    """
UPDATE {Notification}
SET state = {sending}, attempts = attempts + 1, lease_expires_at = %(lease)s, updated_at = %(now)s
WHERE id = %(id)s
  AND ((state = {pending} AND next_attempt_at <= %(now)s) OR (state = {sending} AND lease_expires_at <= %(now)s))
RETURNING id, kind, recipient, body, attempts
""",
    Notification=Notification,
    pending=Notification.State.PENDING,
    sending=Notification.State.SENDING,
)
_TAKE_BATCH_SQL = sql(
    """
UPDATE {Notification}
SET state = {sending}, attempts = attempts + 1, lease_expires_at = %(lease)s, updated_at = %(now)s
WHERE id IN (
    SELECT id FROM {Notification}
    WHERE lottery_id = %(lottery)s AND kind = %(kind)s
      AND ((state = {pending} AND next_attempt_at <= %(now)s) OR (state = {sending} AND lease_expires_at <= %(now)s))
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id, kind, recipient, body, attempts
""",
    Notification=Notification,
    pending=Notification.State.PENDING,
    sending=Notification.State.SENDING,
)
# Each taken message's outcome, in one statement; only a message still "sending" takes it.
_FINISH_SQL = sql(
    """
UPDATE {Notification} n
SET state = o.state, gateway_message_id = o.gateway_message_id, latency_ms = o.latency_ms,
    last_error = o.last_error, next_attempt_at = o.next_attempt_at, sent_at = o.sent_at,
    lease_expires_at = NULL, updated_at = %(now)s,
    -- a retry's task is queued for its time (send_notification); the sweep waits a lease past that
    queued_at = CASE WHEN o.state = {pending} THEN o.next_attempt_at ELSE n.queued_at END
FROM unnest(%(ids)s::bigint[], %(states)s::text[], %(gateway_ids)s::text[], %(latencies)s::integer[],
            %(errors)s::text[], %(next)s::timestamptz[], %(sent)s::timestamptz[])
     AS o(id, state, gateway_message_id, latency_ms, last_error, next_attempt_at, sent_at)
WHERE n.id = o.id AND n.state = {sending}
RETURNING n.lottery_id, n.kind, n.state
""",
    Notification=Notification,
    sending=Notification.State.SENDING,
    pending=Notification.State.PENDING,
)
# A broadcast's progress, moved by the outcomes its batch recorded (and back by a re-send).
_PROGRESS_SQL = sql(
    """
UPDATE {Broadcast}
SET sent = sent + %(sent)s, failed = failed + %(failed)s,
    finished_at = CASE WHEN sent + %(sent)s + failed + %(failed)s >= total THEN %(now)s END
WHERE lottery_id = %(lottery)s
""",
    Broadcast=Broadcast,
)


@dataclass(frozen=True)
class _Taken:
    id: int
    kind: str
    recipient: str
    body: str
    attempts: int

    @property
    def sms(self) -> OutgoingSms:
        return OutgoingSms(to=self.recipient, body=self.body, idempotency_key=idempotency_key(self.id))


@dataclass(frozen=True)
class SendOutcome:
    taken: int  # messages this call took (0: none was due, or another worker has them)
    sent: int
    retry_in: float | None  # seconds until the earliest retry this call scheduled, None if none
    more: bool = False  # a full batch was taken: more may be due


def backoff_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from SMS_RETRY_BACKOFF_MS, capped."""
    delay_ms: int = settings.SMS_RETRY_BACKOFF_MS * 2 ** min(attempts - 1, 30)
    return float(min(delay_ms, settings.SMS_RETRY_BACKOFF_MAX_MS)) / 1000


def _take(statement: str, params: dict[str, Any], now: datetime) -> list[_Taken]:
    lease = now + timedelta(seconds=settings.SMS_SEND_LEASE_SECONDS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, {**params, "now": now, "lease": lease})
        return [_Taken(*row) for row in cursor.fetchall()]


_State = Notification.State
# The states as plain strings, for the outcome arrays.
_SENT, _FAILED, _PENDING = (str(state.value) for state in (_State.SENT, _State.FAILED, _State.PENDING))


def _outcome_row(
    message: _Taken, result: SendResult | SmsRefused, now: datetime
) -> tuple[tuple[Any, ...], float | None]:
    """What one attempt leaves on the message's row (id, state, gateway id, latency, error, next attempt, sent at),
    and the backoff before its retry (None: no retry)."""
    if isinstance(result, KeyAlreadySeen):  # sent by an earlier attempt whose worker died before writing it down
        metrics.messages_total.labels(message.kind, "already_at_gateway").inc()
        return (message.id, _SENT, result.gateway_message_id, None, "", now, now), None
    if isinstance(result, SendResult):
        metrics.messages_total.labels(message.kind, "sent").inc()
        metrics.send_latency.labels(message.kind).observe(result.latency_ms / 1000)
        return (message.id, _SENT, result.gateway_message_id, result.latency_ms, "", now, now), None
    error = str(result) or type(result).__name__
    if message.attempts >= live("SMS_MAX_ATTEMPTS"):
        metrics.messages_total.labels(message.kind, "failed").inc()
        logger.warning(
            "%s SMS %s failed after %s attempts: %s", message.kind, message.id, message.attempts, error,
            extra={"notification_id": message.id, "kind": message.kind, "attempts": message.attempts},
        )  # fmt: skip
        return (message.id, _FAILED, "", None, error, now, None), None
    metrics.messages_total.labels(message.kind, "retried").inc()
    delay = backoff_seconds(message.attempts)
    return (message.id, _PENDING, "", None, error, now + timedelta(seconds=delay), None), delay


def _finish(taken: Sequence[_Taken], results: Sequence[SendResult | SmsRefused]) -> SendOutcome:
    """Record each taken message's result in one statement: sent (a key the gateway had seen counts), retried later,
    or failed. Only a message still ``sending`` takes it."""
    now = timezone.now()
    outcomes = [_outcome_row(message, result, now) for message, result in zip(taken, results, strict=True)]
    columns = list(zip(*(row for row, _ in outcomes), strict=True))
    names = ("ids", "states", "gateway_ids", "latencies", "errors", "next", "sent")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FINISH_SQL, {**{name: list(c) for name, c in zip(names, columns, strict=True)}, "now": now})
        _broadcast_progress(cursor, cursor.fetchall(), now)
    retries = [delay for _, delay in outcomes if delay is not None]
    sent = sum(row[1] == _SENT for row, _ in outcomes)
    return SendOutcome(taken=len(taken), sent=sent, retry_in=min(retries) if retries else None)


def _broadcast_progress(cursor: Any, changed: Sequence[tuple[int, str, str]], now: datetime) -> None:
    """Count the broadcast messages a finish moved to sent or failed on their broadcasts (rows it did not move,
    finished meanwhile by another worker, are not in ``changed``)."""
    moved: dict[int, list[int]] = {}
    for lottery_id, kind, state in changed:
        if kind == Notification.Kind.BROADCAST and state in (_SENT, _FAILED):
            counts = moved.setdefault(lottery_id, [0, 0])
            counts[state == _FAILED] += 1
    for lottery_id, (sent, failed) in moved.items():
        cursor.execute(_PROGRESS_SQL, {"lottery": lottery_id, "sent": sent, "failed": failed, "now": now})


def notification_send(*, notification_id: int, now: datetime | None = None) -> SendOutcome:
    """Send one notification if it is due and no live worker holds it (see the module's docstring).

    Called outside a transaction: the conditional UPDATE that takes the
    message commits first, the gateway is called holding no lock, and the
    outcome is written after.
    """
    with tracing.span("sms send", {tracing.NOTIFICATION_ID: notification_id}) as span:
        outcome = _notification_send(notification_id=notification_id, now=now)
        if span.is_recording():
            span.set_attributes({"sms.taken": outcome.taken, "sms.sent": outcome.sent})
        return outcome


def _notification_send(*, notification_id: int, now: datetime | None) -> SendOutcome:
    taken = _take(_TAKE_ONE_SQL, {"id": notification_id}, now or timezone.now())
    if not taken:
        return SendOutcome(taken=0, sent=0, retry_in=None)
    message = taken[0]
    tracing.annotate({"sms.kind": message.kind, "sms.attempt": message.attempts})
    try:
        result: SendResult | SmsRefused = gateway().send(message.sms)
    except SmsRefused as refusal:
        result = refusal
    except Exception as error:  # a backend's own trouble: a failed attempt like any other, retried with the same key
        logger.exception(
            "SMS gateway error on %s SMS %s", message.kind, message.id,
            extra={"notification_id": message.id, "kind": message.kind},
        )  # fmt: skip
        result = DeliveryFailed(f"{type(error).__name__}: {error}")
    outcome = _finish(taken, [result])
    logger.info(
        "%s SMS %s to %s %s (attempt %s)", message.kind, message.id, mask_phone(message.recipient),
        "sent" if outcome.sent else f"not sent: {result}", message.attempts,
        extra={"notification_id": message.id, "kind": message.kind, "attempt": message.attempts},
    )  # fmt: skip
    return outcome


def notification_batch_send(*, lottery_id: int, kind: str, now: datetime | None = None) -> SendOutcome:
    """Send up to SMS_BROADCAST_BATCH due messages of a lottery and kind in one gateway call.

    Rows are taken with ``FOR UPDATE SKIP LOCKED`` inside the taking UPDATE,
    so batches running side by side take disjoint messages. The caller runs
    it again while a full batch was taken.
    """
    with tracing.span("sms batch send", {tracing.LOTTERY_ID: lottery_id, "sms.kind": kind}) as span:
        outcome = _notification_batch_send(lottery_id=lottery_id, kind=kind, now=now)
        if span.is_recording():
            span.set_attributes({"sms.taken": outcome.taken, "sms.sent": outcome.sent})
        return outcome


def _notification_batch_send(*, lottery_id: int, kind: str, now: datetime | None) -> SendOutcome:
    params = {"lottery": lottery_id, "kind": kind, "limit": settings.SMS_BROADCAST_BATCH}
    taken = _take(_TAKE_BATCH_SQL, params, now or timezone.now())
    if not taken:
        return SendOutcome(taken=0, sent=0, retry_in=None)
    try:
        results = gateway().send_batch([message.sms for message in taken])
    except Exception as error:  # the whole batch failed: each message retries with its own key
        logger.exception(
            "SMS gateway error on a batch of %s %s SMS of lottery %s", len(taken), kind, lottery_id,
            extra={"lottery_id": lottery_id, "kind": kind, "messages": len(taken)},
        )  # fmt: skip
        results = [DeliveryFailed(f"{type(error).__name__}: {error}") for _ in taken]
    outcome = _finish(taken, results)
    logger.info(
        "%s SMS of lottery %s: %s of %s sent", kind, lottery_id, outcome.sent, len(taken),
        extra={"lottery_id": lottery_id, "kind": kind, "messages": len(taken), "sent": outcome.sent},
    )  # fmt: skip
    return SendOutcome(
        taken=outcome.taken,
        sent=outcome.sent,
        retry_in=outcome.retry_in,
        more=len(taken) >= settings.SMS_BROADCAST_BATCH,
    )


# --- Staff ---------------------------------------------------------------------


def notification_resend(
    *, notification_id: int, actor: AbstractUser | None, now: datetime | None = None
) -> Notification:
    """Put a failed notification back in line, with its attempts from zero; its send is queued after commit.

    Needs ``notifications.resend_notification``. Only a ``failed`` one: a
    sent message was delivered, and a pending one is on its way. It keeps its
    idempotency key, so even a gateway that did take an earlier attempt sends
    nothing twice. Locks the notification's row.
    """
    require_permission(actor, RESEND_NOTIFICATION)
    now = now or timezone.now()
    with transaction.atomic():
        notification = Notification.objects.select_for_update().filter(pk=notification_id).first()
        if notification is None:
            raise NotificationNotFound(details={"notification_id": notification_id})
        if notification.state != Notification.State.FAILED:
            raise NotificationNotFailed(details={"notification_id": notification_id, "state": notification.state})
        notification.state = Notification.State.PENDING
        notification.attempts = 0
        notification.next_attempt_at = now
        notification.queued_at = now
        notification.resent_by_id = actor.pk if actor is not None else None
        notification.resent_at = now
        notification.updated_at = now
        notification.save(
            update_fields=["state", "attempts", "next_attempt_at", "queued_at", "resent_by", "resent_at", "updated_at"]
        )
        if notification.kind == Notification.Kind.BROADCAST:
            Broadcast.objects.filter(lottery_id=notification.lottery_id).update(
                failed=F("failed") - 1, finished_at=None
            )
        if notification.kind in BATCHED_KINDS:
            lottery_id, kind = notification.lottery_id, notification.kind
            transaction.on_commit(lambda: _queue_batch(lottery_id, kind), robust=True)
        else:
            transaction.on_commit(lambda: _queue_sends([notification_id]), robust=True)
    logger.info(
        "SMS queued again by staff", extra={"notification_id": notification_id, "actor_id": notification.resent_by_id}
    )
    return notification


# --- The sweep -----------------------------------------------------------------


_SWEEP_SINGLE_SQL = sql(
    """
UPDATE {Notification} SET queued_at = %(now)s
WHERE id IN (
    SELECT id FROM {Notification}
    WHERE kind <> ALL(%(batched)s::text[]) AND queued_at <= %(stale)s
      AND ((state = {pending} AND next_attempt_at <= %(now)s) OR (state = {sending} AND lease_expires_at <= %(now)s))
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id
""",
    Notification=Notification,
    pending=Notification.State.PENDING,
    sending=Notification.State.SENDING,
)


def notifications_sweep(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Queue what is due with no task on its way: a lost kick, a retry's lost task, a dead worker's lease.

    A message sent one by one is queued when it is due and no task was
    queued for it in the last SMS_SEND_LEASE_SECONDS (``queued_at``, which
    this sets), at most ``limit`` a sweep: a backlog on the queue is not
    queued again every sweep. A batched kind's lottery gets one batch when it
    has due messages and none of its messages changed for a lease (its chain
    of batches stopped). Queuing a message a task is already on is harmless:
    one of them takes it. Returns how many tasks it queued.
    """
    from notifications.selectors import idle_batches

    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.SMS_SEND_LEASE_SECONDS)
    batched = [str(kind) for kind in BATCHED_KINDS]
    params: dict[str, Any] = {"now": now, "stale": stale, "limit": limit, "batched": batched}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SWEEP_SINGLE_SQL, params)
        single_ids = [row[0] for row in cursor.fetchall()]
    batches = idle_batches(now=now, idle_since=stale, batched_kinds=BATCHED_KINDS)
    _queue_sends(single_ids)
    for lottery_id, kind in batches:
        _queue_batch(lottery_id, kind)
    return len(single_ids) + len(batches)


# --- Inbound messages -----------------------------------------------------------

# What a recipient may answer to stop the messages, as carriers and providers read it.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})


def sms_received(*, from_number: str, body: str) -> bool:
    """An SMS a player sent us, as a gateway delivers it; returns whether it opted them out.

    A STOP (or any of ``STOP_WORDS``, in any case, alone in the message)
    opts out every player on file with that number
    (``entries.services.sms_opt_out``). Anything else is logged and kept no
    further: the platform has no conversation to have.
    """
    if body.strip().upper().replace(" ", "") not in STOP_WORDS:
        logger.info("inbound SMS ignored", extra={"from": mask_phone(from_number)})
        return False
    opted_out = sms_opt_out(from_number, source=ConsentSource.SMS_STOP)
    logger.info("inbound STOP", extra={"from": mask_phone(from_number), "opted_out": opted_out})
    return True
