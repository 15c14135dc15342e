"""Write side of players and ballots: submission rules and bans.

Ballot submission is one SQL statement that locks, checks and inserts, with
no pre-check: the database's constraints decide the per-player limit, fraud
and idempotency, and the service turns a violated constraint into the
matching domain error. An accepted ballot's LotteryEntryCreated event is
stored by the same statement: the ballot and its event commit together, in
one round trip.
"""

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AbstractUser
from django.db import Error, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from core import tracing
from core.authorization import actor_id, require_permission
from core.db import column_of, sql, violated_constraint
from core.errors import ApplicationError
from core.resilience import drop_database_connection
from core.tallies import tally
from entries import metrics
from entries.errors import (
    BallotLimitReached,
    BanReasonRequired,
    DuplicateEntry,
    IdempotencyKeyReused,
    InvalidPhoneNumber,
    PhoneNumberOnFile,
    PhoneNumberRequired,
    PlayerBanned,
    PlayerNotFound,
)
from entries.events import entry_created
from entries.models import (
    BAN_PLAYER,
    CHANGE_SMS_CONSENT,
    OPT_IN_SOURCES,
    OPT_OUT_SOURCES,
    UNBAN_PLAYER,
    Ballot,
    ConsentSource,
    Player,
    PlayerBanEvent,
    SmsConsentEvent,
)
from entries.phones import mask_phone, normalize_phone_number
from lotteries.errors import LotteryClosed, LotteryNotFound, LotteryNotOpen, StakeRequired
from lotteries.models import Lottery
from outbox.services import ID_MARK, published, statement_event

logger = logging.getLogger(__name__)

# The statement behind ballot_submit. The ballot's phone number is the
# player's, copied as stored: E.164 (entries.phones normalises every door a
# number comes in by), so the fraud constraint compares one spelling per
# number. ``target`` takes a share lock on the
# lottery row (close takes it exclusively, so no ballot commits after the
# draw sealed its list), checks its kind (a pool is entered only by a stake,
# through the stake consumer, never by a ballot of its own) and on the player row (a ban updates it, so a ballot
# either commits before the ban, and is voided by it, or sees the ban). The
# insert happens only when every rule checked here holds and the player's
# Idempotency-Key (if any) is new; the constraints on entries_ballot check the
# rest, including two retries racing with the same key. ``next_slot`` may be stale under a race of
# the same player's requests: the unique slot constraint then fails and the
# service retries with a fresh snapshot.
_SUBMIT_SQL = sql(
    """
WITH target AS (
    SELECT l.kind, l.state, l.opens_at, l.closes_at, p.is_banned, p.phone_number, p.external_account_id
    FROM {Lottery} l CROSS JOIN {Player} p
    WHERE l.id = %(lottery_id)s AND p.id = %(player_id)s
    FOR SHARE OF l, p
), next_slot AS (
    SELECT COALESCE(MAX(b.slot), 0) + 1 AS slot
    FROM {Ballot} b
    WHERE b.lottery_id = %(lottery_id)s AND b.player_id = %(player_id)s AND b.status = {valid}
), previous AS (
    SELECT b.id FROM {Ballot} b
    WHERE b.player_id = %(player_id)s AND b.idempotency_key = %(idempotency_key)s::varchar
), inserted AS (
    INSERT INTO {Ballot} (
        lottery_id, player_id, status, slot, phone_number, external_account_id,
        rejection_reason, voided_at, idempotency_key, created_at
    )
    SELECT %(lottery_id)s, %(player_id)s, %(status)s::varchar,
           CASE WHEN %(status)s::varchar = {valid} THEN n.slot END,
           t.phone_number, t.external_account_id, %(rejection_reason)s::varchar, NULL,
           %(idempotency_key)s::varchar, %(now)s
    FROM target t CROSS JOIN next_slot n
    WHERE t.kind <> {pool} AND t.state = {open} AND t.opens_at <= %(now)s AND t.closes_at > %(now)s
      AND NOT t.is_banned
      AND (%(status)s::varchar <> {valid} OR n.slot <= %(limit)s)
      AND NOT EXISTS (SELECT 1 FROM previous)
    RETURNING id, slot, created_at
){{event}}
SELECT t.kind, t.state, t.opens_at, t.closes_at, t.is_banned, i.id, i.slot, i.created_at,
       EXISTS (SELECT 1 FROM previous)
FROM target t LEFT JOIN inserted i ON TRUE
""",
    Lottery=Lottery,
    Player=Player,
    Ballot=Ballot,
    valid=Ballot.Status.VALID,
    open=Lottery.State.OPEN,
    pool=Lottery.Kind.POOL,  # a pool is entered only by a stake
)

# A rejected ballot tells nobody; a valid one stores its LotteryEntryCreated
# event in the same statement (outbox.services.statement_event: one round
# trip, atomic on its own), from the row ``inserted`` returns.
_SUBMIT_REJECTED_SQL = _SUBMIT_SQL.replace("{event}", "")
_SUBMIT_VALID_SQL = _SUBMIT_SQL.replace("{event}", ", stored_event AS ({event_insert})")

_FRAUD_CONSTRAINTS = {
    "ballot_phone_number_not_shared": Ballot.RejectionReason.SHARED_PHONE,
    "ballot_external_account_not_shared": Ballot.RejectionReason.SHARED_ACCOUNT,
}
_SLOT_CONSTRAINT = "ballot_player_slot_unique"
_IDEMPOTENCY_CONSTRAINT = "ballot_idempotency_key_unique_per_player"
_TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock_detected, serialization_failure


# The refusals that store no ballot: each is tallied (core.tallies) by the hour, the lottery's kind and its
# code, for the business metrics. A duplicate entry is not among them: its rejected ballot is stored.
BALLOT_REFUSED = "ballot_refused"
TALLIED_REFUSALS: tuple[type[ApplicationError], ...] = (
    PlayerBanned,
    LotteryNotFound,
    LotteryNotOpen,
    LotteryClosed,
    StakeRequired,
    BallotLimitReached,
    IdempotencyKeyReused,
)


_kinds: dict[int, str] = {}  # lottery id -> kind, per process: a lottery's kind never changes


def _lottery_kind(lottery_id: int) -> str:
    """A lottery's kind, "" for no such lottery (not kept: the id may yet be given to one)."""
    kind = _kinds.get(lottery_id)
    if kind is None:
        kind = Lottery.objects.filter(pk=lottery_id).values_list("kind", flat=True).first()
        if kind is None:
            return ""
        if len(_kinds) >= 4096:
            _kinds.clear()
        _kinds[lottery_id] = kind
    return kind


@dataclass(frozen=True)
class SubmittedBallot:
    ballot: Ballot
    replayed: bool  # True when an Idempotency-Key retry returned the first result


def ballot_submit(
    *,
    lottery_id: int,
    player: Player,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> SubmittedBallot:
    """Enter ``player`` into a lottery, or raise the rule it breaks.

    Raises ``LotteryNotFound``, ``StakeRequired`` (a pool: only a stake
    enters one), ``LotteryNotOpen`` (scheduled, or before ``opens_at``),
    ``LotteryClosed`` (closed, drawn or cancelled, or at or after
    ``closes_at``), ``PlayerBanned``, ``BallotLimitReached``,
    ``IdempotencyKeyReused`` and, after storing a ``rejected`` ballot,
    ``DuplicateEntry``. A retry with the same ``idempotency_key`` returns the
    first result (or raises the first result's error) without a second ballot.
    Takes no lock itself beyond the statement; safe in or out of a transaction.
    Each call is counted in ``entries.metrics``: accepted, replayed, or refused by code; a
    refusal that stores no ballot is also tallied by the hour (``BALLOT_REFUSED``).
    """
    with tracing.span("ballot submit", {tracing.LOTTERY_ID: lottery_id}) as span:
        try:
            submitted = _ballot_submit(lottery_id=lottery_id, player=player, idempotency_key=idempotency_key, now=now)
        except ApplicationError as refused:
            metrics.ballot_refused(refused.code)
            if isinstance(refused, TALLIED_REFUSALS):
                tally(BALLOT_REFUSED, dimension=_lottery_kind(lottery_id), code=refused.code, at=now)
            raise
        metrics.ballot_counted(replayed=submitted.replayed)
        if span.is_recording():
            span.set_attributes({tracing.BALLOT_ID: submitted.ballot.pk, "ballot.replayed": submitted.replayed})
        return submitted


def _ballot_submit(
    *,
    lottery_id: int,
    player: Player,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> SubmittedBallot:
    now = now or timezone.now()
    params: dict[str, Any] = {
        "lottery_id": lottery_id,
        "player_id": player.pk,
        "status": Ballot.Status.VALID,
        "rejection_reason": "",
        "idempotency_key": idempotency_key,
        "now": now,
        "limit": settings.MAX_BALLOTS_PER_PLAYER,
    }
    # Long: the retry loop below is one state machine, each except clause one
    # rule; split, its passes would hide what each one learns.
    # Each pass learns one thing from a violated constraint or a deadlock; a
    # pass can only move from "valid" to "rejected", or retry a stale slot or
    # a deadlock victim, so this is short.
    reconnected = False
    for _attempt in range(settings.MAX_BALLOTS_PER_PLAYER + 5):
        try:
            ballot = _submit_once(params, lottery_id=lottery_id, player=player, now=now)
        except _ConnectionLost as lost:
            # The server dropped the connection (a restart, a failover): one
            # retry on a fresh connection. When the lost statement may have
            # committed, the fresh connection first looks for its ballot
            # (this call's ``now`` is its created_at): found, it is the
            # answer, and nothing is counted twice.
            if reconnected:
                raise lost.error from None
            drop_database_connection()
            reconnected = True
            if lost.maybe_written:
                stored = Ballot.objects.filter(
                    lottery_id=lottery_id, player=player, created_at=now, status=Ballot.Status.VALID
                ).first()
                if stored is not None:
                    return SubmittedBallot(ballot=stored, replayed=False)
            continue
        except OperationalError as error:
            # Two conflicting inserts checked against an exclusion constraint
            # at the same moment can deadlock; PostgreSQL aborts one of them.
            # Its retry sees the other's committed ballot and is judged on it.
            if _sqlstate(error) in _TRANSIENT_SQLSTATES:
                continue
            raise
        except IntegrityError as error:
            constraint = violated_constraint(error)
            if constraint == _IDEMPOTENCY_CONSTRAINT:
                return _replay(player=player, lottery_id=lottery_id, idempotency_key=idempotency_key)
            if constraint == _SLOT_CONSTRAINT:
                continue  # a concurrent ballot of the same player took the slot
            if constraint in _FRAUD_CONSTRAINTS:
                params["status"] = Ballot.Status.REJECTED
                params["rejection_reason"] = _FRAUD_CONSTRAINTS[constraint]
                continue
            raise
        if ballot is None:  # this Idempotency-Key already has a ballot
            return _replay(player=player, lottery_id=lottery_id, idempotency_key=idempotency_key)
        if ballot.status == Ballot.Status.REJECTED:
            logger.info(
                "ballot rejected as duplicate entry",
                extra={
                    "lottery_id": lottery_id,
                    "ballot_id": ballot.pk,
                    "player_id": player.pk,
                    "reason": ballot.rejection_reason,
                },
            )
            raise _duplicate_entry(ballot)
        return SubmittedBallot(ballot=ballot, replayed=False)
    raise RuntimeError("ballot submission did not settle; constraints keep changing under it")


def _submit_once(params: dict[str, Any], *, lottery_id: int, player: Player, now: datetime) -> Ballot | None:
    """One attempt: one statement that checks, inserts and, for a new valid
    ballot, stores its LotteryEntryCreated event.

    Outside a caller's transaction a valid ballot is that one statement in
    autocommit (atomic by itself: no BEGIN, no COMMIT, one round trip); a
    rejected one, and any attempt inside a caller's transaction, runs in a
    transaction (a savepoint inside a caller's). Returns the stored ballot, or
    ``None`` when the Idempotency-Key already has one. A refusal raises here,
    where nothing was written; a violated constraint rolls back this attempt only.
    """
    outermost = not connection.in_atomic_block
    valid = params["status"] == Ballot.Status.VALID
    if valid:
        entry = entry_created(
            lottery_id=lottery_id,
            ballot_id=ID_MARK,
            player_id=player.pk,
            player_external_id=player.external_account_id,
            created_at=now,  # the ballot's created_at
        )
        # The event's row stores this span's traceparent (the "ballot submit" span): the relay's send is its child.
        tracing.annotate({tracing.EVENT_ID: str(entry.id), tracing.EVENT_TYPE: entry.type})
        event = statement_event(entry, source="inserted")
        statement, arguments = _SUBMIT_VALID_SQL.replace("{event_insert}", event.sql), {**params, **event.params}
    else:
        statement, arguments = _SUBMIT_REJECTED_SQL, params
    try:
        own_transaction = contextlib.nullcontext() if outermost and valid else transaction.atomic()
        with own_transaction, connection.cursor() as cursor:
            cursor.execute(statement, arguments)
            row: tuple[Any, ...] | None = cursor.fetchone()
    except (OperationalError, InterfaceError) as error:
        if outermost and _connection_lost(error):
            # In autocommit the statement is its own COMMIT: it may have committed before the
            # connection went. In a transaction, it died before the COMMIT: nothing was written.
            raise _ConnectionLost(error, maybe_written=valid) from error
        raise
    if row is not None and row[-1]:
        return None
    ballot = _outcome(row, params=params, lottery_id=lottery_id, player=player, now=now)
    if valid:
        published()
    return ballot


class _ConnectionLost(Exception):
    """The connection died inside an attempt: before its COMMIT (nothing written), or ``maybe_written``."""

    def __init__(self, error: Error, *, maybe_written: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_written = maybe_written


# SQLSTATEs that say the connection itself is gone: class 08 (connection
# exception), and the server shutting down or starting (57P01-57P03).
_CONNECTION_GONE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _connection_lost(error: Error) -> bool:
    """True when ``error`` says the server dropped the connection (not that the statement failed)."""
    sqlstate = _sqlstate(error)
    if sqlstate is not None:
        return sqlstate.startswith(_CONNECTION_GONE_SQLSTATES)
    raw = connection.connection
    return raw is None or bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))


def _outcome(
    row: tuple[Any, ...] | None, *, params: dict[str, Any], lottery_id: int, player: Player, now: datetime
) -> Ballot:
    if row is None:
        raise LotteryNotFound(details={"lottery_id": lottery_id})
    kind, state, opens_at, closes_at, is_banned, ballot_id, slot, created_at, _replayed = row
    if kind == Lottery.Kind.POOL:
        raise StakeRequired(details={"lottery_id": lottery_id})
    if is_banned:
        logger.info("ballot refused: player banned", extra={"lottery_id": lottery_id, "player_id": player.pk})
        raise PlayerBanned()
    if state == Lottery.State.SCHEDULED or (state == Lottery.State.OPEN and opens_at > now):
        raise LotteryNotOpen(details={"lottery_id": lottery_id, "state": state, "opens_at": opens_at.isoformat()})
    if state != Lottery.State.OPEN or closes_at <= now:
        raise LotteryClosed(details={"lottery_id": lottery_id, "state": state, "closes_at": closes_at.isoformat()})
    if ballot_id is None:
        raise BallotLimitReached(details={"lottery_id": lottery_id, "limit": params["limit"]})
    return Ballot(
        id=ballot_id,
        lottery_id=lottery_id,
        player_id=player.pk,
        status=params["status"],
        slot=slot,
        rejection_reason=params["rejection_reason"],
        idempotency_key=params["idempotency_key"],
        created_at=created_at,
    )


def _sqlstate(error: Exception) -> str | None:
    return getattr(error.__cause__, "sqlstate", None)


def _duplicate_entry(ballot: Ballot) -> DuplicateEntry:
    return DuplicateEntry(details={"ballot_id": ballot.pk, "reason": ballot.rejection_reason})


def _replay(*, player: Player, lottery_id: int, idempotency_key: str | None) -> SubmittedBallot:
    first = Ballot.objects.get(player=player, idempotency_key=idempotency_key)
    if first.lottery_id != lottery_id:
        raise IdempotencyKeyReused(details={"lottery_id": first.lottery_id})
    if first.status == Ballot.Status.REJECTED:
        raise _duplicate_entry(first)
    return SubmittedBallot(ballot=first, replayed=True)


# --- Bans -----------------------------------------------------------------

# Share-locks the not-yet-drawn lotteries that hold the player's valid
# ballots (the lock protocol of lotteries.models): a draw in progress
# finishes first, and no draw starts until the ballots are voided.
_LOCK_UNDRAWN_LOTTERIES_SQL = sql(
    """
SELECT l.id FROM {Lottery} l
WHERE l.state IN ({open}, {closed})
  AND l.id IN (SELECT b.lottery_id FROM {Ballot} b WHERE b.player_id = %s AND b.status = {valid})
ORDER BY l.id
FOR SHARE
""",
    Lottery=Lottery,
    Ballot=Ballot,
    open=Lottery.State.OPEN,
    closed=Lottery.State.CLOSED,
    valid=Ballot.Status.VALID,
)


# What else a ban ends, after its commit: the draws floor registers the forfeit of the player's unclaimed
# drop awards (draws.apps). A hook that fails is logged; beat's forfeit sweep catches up within a minute.
ON_BAN: list[Callable[[int], None]] = []


def player_ban(*, player_id: int, reason: str, actor: AbstractUser | None) -> PlayerBanEvent | None:
    """Ban a player and void their valid ballots in lotteries not yet drawn.

    Returns the audit event, or ``None`` when the player was already banned
    (idempotent). The player row is updated first: it waits for ballot
    inserts holding its share lock, and later inserts see the ban. A staff
    ``actor`` needs ``ban_player``.
    """
    require_permission(actor, BAN_PLAYER)
    reason = (reason or "").strip()
    if not reason:
        raise BanReasonRequired()
    now = timezone.now()
    with transaction.atomic():
        updated = Player.objects.filter(pk=player_id, is_banned=False).update(
            is_banned=True, banned_at=now, ban_reason=reason, banned_by=actor
        )
        if not updated:
            if not Player.objects.filter(pk=player_id).exists():
                raise PlayerNotFound(details={"player_id": player_id})
            return None
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_UNDRAWN_LOTTERIES_SQL, [player_id])
            lottery_ids = [row[0] for row in cursor.fetchall()]
        voided = Ballot.objects.filter(
            player_id=player_id, status=Ballot.Status.VALID, lottery_id__in=lottery_ids
        ).update(status=Ballot.Status.VOID, voided_at=now)
        event = PlayerBanEvent.objects.create(
            player_id=player_id,
            action=PlayerBanEvent.Action.BAN,
            reason=reason,
            actor_id=actor_id(actor),
            voided_ballots=voided,
        )
        for hook in ON_BAN:
            transaction.on_commit(functools.partial(hook, player_id), robust=True)
    logger.info("player banned", extra={"player_id": player_id, "voided_ballots": voided})
    return event


def player_unban(*, player_id: int, reason: str, actor: AbstractUser | None) -> PlayerBanEvent | None:
    """Lift a ban. Ballots voided by the ban stay void; the player may enter open lotteries again.

    A staff ``actor`` needs ``unban_player``.
    """
    require_permission(actor, UNBAN_PLAYER)
    reason = (reason or "").strip()
    if not reason:
        raise BanReasonRequired()
    with transaction.atomic():
        updated = Player.objects.filter(pk=player_id, is_banned=True).update(
            is_banned=False, banned_at=None, ban_reason="", banned_by=None
        )
        if not updated:
            if not Player.objects.filter(pk=player_id).exists():
                raise PlayerNotFound(details={"player_id": player_id})
            return None
        event = PlayerBanEvent.objects.create(
            player_id=player_id, action=PlayerBanEvent.Action.UNBAN, reason=reason, actor_id=actor_id(actor)
        )
    logger.info("player unbanned", extra={"player_id": player_id})
    return event


# --- Players named by stakes -------------------------------------------------

# An unusable password: a player created from a stake never logs in here.
STAKE_PLAYER_PASSWORD = f"{UNUSABLE_PASSWORD_PREFIX}created-from-a-stake"


@dataclass(frozen=True)
class StakePlayer:
    """A player named by a stake: their key, and whether they are banned (a banned player's stake is refused)."""

    pk: int
    is_banned: bool


@cache
def _create_stake_players_statement() -> tuple[str, tuple[tuple[str, Any], ...]]:
    """INSERT ... SELECT unnest of the players a batch of stakes names, every other column at its field's default.

    Built once per process from ``Player._meta``: a field added to the model
    gets its default here too (a field with neither a default nor NULL would
    have to be named below). Returns the text and the defaulted fields by
    parameter name; their values are taken per batch (``now`` for date_joined).
    """
    given = {"username": "u.username", "external_account_id": "u.external_id", "password": "%(password)s"}
    columns: list[str] = []
    values: list[str] = []
    defaulted: list[tuple[str, Any]] = []
    for field in Player._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.attname in given:
            value = given[field.attname]
        elif field.has_default() or field.get_default() is not None:
            defaulted.append((f"default_{field.attname}", field))  # now for date_joined, "" for a name
            value = f"%(default_{field.attname})s"
        elif field.null:
            continue
        else:
            raise ValueError(f"a player created from a stake needs a value for {field.attname}")
        columns.append(column_of(field))
        values.append(value)
    sql = (
        f"INSERT INTO {Player._meta.db_table} ({', '.join(columns)})"  # noqa: S608 (names from _meta only)
        f" SELECT {', '.join(values)}"
        " FROM unnest(%(usernames)s::varchar[], %(external_ids)s::varchar[]) AS u(username, external_id)"
        " ON CONFLICT (username) DO NOTHING"
        " RETURNING username, id, is_banned"
    )
    return sql, tuple(defaulted)


def _create_stake_players_sql() -> tuple[str, dict[str, Any]]:
    """The statement, and this batch's values for its defaulted columns."""
    sql, defaulted = _create_stake_players_statement()
    return sql, {name: field.get_default() for name, field in defaulted}


_STAKE_PLAYERS_LOCK_SQL = sql(
    "SELECT username, id, is_banned FROM {Player} WHERE username = ANY(%s) ORDER BY id FOR SHARE", Player=Player
)


def players_for_stakes(*, external_ids: set[str]) -> dict[str, StakePlayer]:
    """The players a batch of stakes names by the game service's ``playerId``, created on first sight.

    A player first seen in a stake is created with username ``ext-<playerId>``,
    ``external_account_id`` the ``playerId`` and no usable password (they log
    in nowhere here). Each one that existed is share-locked, like a ballot's
    player, so a ban waits for the caller's transaction and then voids its
    ballots, or the caller sees the ban; one created here is the caller's
    until it commits. Call it inside the transaction that enters the stakes.
    """
    if not external_ids:
        return {}
    ordered = sorted(external_ids)
    usernames = [f"ext-{external_id}" for external_id in ordered]
    create, defaults = _create_stake_players_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            create,
            {**defaults, "password": STAKE_PLAYER_PASSWORD, "usernames": usernames, "external_ids": ordered},
        )
        rows = cursor.fetchall()
        # The players created here are this transaction's until it commits: no ban can reach them.
        # The others are share-locked like a ballot's player (ballot_submit): a ban waits for this
        # batch and then voids its ballots, or this batch sees the ban. This second statement sees
        # a player that another consumer created after the first one's snapshot (read committed).
        created = {username for username, _, _ in rows}
        known = [username for username in usernames if username not in created]
        if known:
            cursor.execute(_STAKE_PLAYERS_LOCK_SQL, [known])
            rows += cursor.fetchall()
    return {username[len("ext-") :]: StakePlayer(pk, banned) for username, pk, banned in rows}


# --- SMS consent ---------------------------------------------------------------

_OPT_IN_SOURCES = frozenset(OPT_IN_SOURCES)
_OPT_OUT_SOURCES = frozenset(OPT_OUT_SOURCES)


def sms_consent_set(*, player_id: int, opted_in: bool, source: str, actor: AbstractUser | None, note: str = "") -> bool:
    """Record a player's consent to drop announcements by SMS, or its withdrawal, given to staff or imported.

    A staff ``actor`` needs ``change_sms_consent``; ``None`` is the platform
    (an import, ``seed_demo``). Opting in needs a phone number on file
    (``PhoneNumberRequired``). Returns False when nothing changed: an opt-in
    already given keeps its first time and source. Locks the player row.
    """
    require_permission(actor, CHANGE_SMS_CONSENT)
    with transaction.atomic():
        player = _locked_player(player_id)
        return _apply_consent(player, opted_in=opted_in, source=source, actor=actor, note=note)


def my_notifications_set(*, player: Player, drop_announcements: bool, phone_number: str | None = None) -> Player:
    """The player's own choice, through the API: opt in to drop announcements by SMS, or out (source ``api``).

    ``phone_number``, in any spelling (normalised, or ``InvalidPhoneNumber``),
    gives the number to text when none is on file; the number on file itself
    may be repeated. Changing a number on file is staff's (admin)
    (``PhoneNumberOnFile``): fraud detection compares the numbers on file,
    and a player who could change theirs at will could dodge it. Returns the
    player as stored. Locks the player row.
    """
    number = None if phone_number is None else normalize_phone_number(phone_number)
    with transaction.atomic():
        locked = _locked_player(player.pk)
        if number is not None and number != locked.phone_number:
            if locked.phone_number or not number:
                raise PhoneNumberOnFile()
            locked.phone_number = number
            locked.save(update_fields=["phone_number"])
            logger.info("phone number added by player", extra={"player_id": locked.pk, "phone": mask_phone(number)})
        _apply_consent(locked, opted_in=drop_announcements, source=ConsentSource.API, actor=None)
    return locked


def sms_opt_out(phone_number: str, source: str = ConsentSource.SMS_STOP) -> int:
    """Opt out every player whose number is ``phone_number``: an inbound STOP (the gateway calls this).

    The number is normalised first (a sender written without its country
    code is read in ``PHONE_DEFAULT_REGION``; ``InvalidPhoneNumber`` when it
    cannot be read). Every player on file with the number is opted out, as
    the phone's owner asked no more messages to it. Returns how many were
    opted in until now (0 for a number nobody opted in with). Locks their rows.
    """
    number = normalize_phone_number(phone_number)
    if not number:
        raise InvalidPhoneNumber(details={"field": "phone_number", "reason": "blank"})
    with transaction.atomic():
        players = list(
            Player.objects.select_for_update().filter(phone_number=number, sms_opt_in_at__isnull=False).order_by("id")
        )
        for player in players:
            _apply_consent(player, opted_in=False, source=source, actor=None)
    logger.info(
        "sms opt-out by number",
        extra={"phone": mask_phone(number), "source": source, "player_ids": [player.pk for player in players]},
    )
    return len(players)


def _locked_player(player_id: int) -> Player:
    try:
        return Player.objects.select_for_update().get(pk=player_id)
    except Player.DoesNotExist:
        raise PlayerNotFound(details={"player_id": player_id}) from None


def _apply_consent(player: Player, *, opted_in: bool, source: str, actor: AbstractUser | None, note: str = "") -> bool:
    """Change a locked player's consent and keep the change in the audit trail; False when there was none to make."""
    if source not in (_OPT_IN_SOURCES if opted_in else _OPT_OUT_SOURCES):
        raise ValueError(f"{source!r} is not a source of an SMS {'opt-in' if opted_in else 'opt-out'}")
    if opted_in == player.sms_opted_in:
        return False
    now = timezone.now()
    if opted_in:
        if not player.phone_number:
            raise PhoneNumberRequired(details={"player_id": player.pk})
        player.sms_opt_in_at, player.sms_opt_in_source = now, source
    else:
        player.sms_opt_in_at, player.sms_opt_in_source = None, ""
        player.sms_opt_out_at, player.sms_opt_out_source = now, source
    player.save(update_fields=["sms_opt_in_at", "sms_opt_in_source", "sms_opt_out_at", "sms_opt_out_source"])
    action = SmsConsentEvent.Action.OPT_IN if opted_in else SmsConsentEvent.Action.OPT_OUT
    SmsConsentEvent.objects.create(
        player=player,
        action=action,
        source=source,
        phone_number=player.phone_number,
        note=note,
        actor_id=actor_id(actor),
    )
    logger.info(
        "sms consent changed",
        extra={"player_id": player.pk, "action": action, "source": source, "phone": mask_phone(player.phone_number)},
    )
    return True
