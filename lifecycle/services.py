"""A lottery's life across apps: opened with a committed seed, closed then drawn, or cancelled and refunded.

The orchestration that needs lotteries, entries and draws together sits
here, above them, so that none of them imports another upward. Every caller
(beat, the close command, admin, the API, a pool's fill) closes through
``lottery_close``; it is atomic, guarded by the lottery's row lock and
idempotent, so any number of concurrent calls yield one draw.
"""

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import tracing
from core.authorization import actor_id, require_permission
from core.db import next_ids, object_row, violated_constraint, write_rows
from draws import algorithm
from draws.events import lottery_drawn
from draws.models import Draw
from draws.services import draw_run, seeds_store
from entries.selectors import players_opted_in_to_sms
from lifecycle.models import DROP_REQUEST_KEY_CONSTRAINT, DropRequest
from lotteries import events as lottery_events
from lotteries.errors import DropKeyReused, LotteryNotDue, LotteryNotFound, LotteryNotOpen
from lotteries.events import RefundStake
from lotteries.models import CLOSE_LOTTERY, CREATE_DROP, FORCE_CLOSE_LOTTERY, Lottery, TransitionSource
from lotteries.services import (
    day_bounds,
    drop_new,
    lottery_new,
    lottery_today,
    lottery_transition,
    transition_row,
    transitions_record,
)
from notifications.messages import drop_opening_body
from notifications.services import broadcast_create, draw_notifications_create
from outbox.events import DomainEvent
from outbox.services import publish

logger = logging.getLogger(__name__)

# What a cancelled lottery of a kind must give back, by kind: a pool's stakes.
# The pool wing plugs its own in (pools.apps), since it sits above this floor.
REFUNDS: dict[str, Callable[[Lottery], list[RefundStake]]] = {}


# --- Opening ------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """What opening lotteries records besides the lotteries and their seeds: the transitions and the events."""

    transitions: list[dict[str, Any]]
    events: list[DomainEvent]


def lotteries_open(
    lotteries: Sequence[Lottery],
    *,
    source: str,
    now: datetime,
    actor: AbstractUser | None = None,
    defer: bool = False,
) -> Opened:
    """Store new lotteries (from ``lottery_new``), each with a fresh seed, its first transition and LotteryOpened.

    The one way a lottery comes to exist, for one (``lottery_open``) or for
    a batch of pools opened by one poll of stakes, in a fixed number of
    statements. Each seed is drawn from a CSPRNG here, before any ballot can
    exist; its commitment is stored on the lottery and published; the seed
    stays secret until the draw. Runs in the caller's transaction.

    A lottery is stored in the state its instance holds: ``open``,
    ``scheduled`` when its window starts later (it publishes
    LotteryScheduled now, with the same commitment, and LotteryOpened when
    ``scheduled_lottery_open`` opens it), or ``closed`` for a pool that the
    batch opening it also filled (one open pool per game and currency is
    checked at each row); that caller records the close.

    With ``defer``, the transitions and events are returned instead of
    written, for a caller that writes them with its own in one statement
    each (a batch of pools), in this same transaction.
    """
    if not lotteries:
        return Opened([], [])
    seeds = [algorithm.new_seed() for _ in lotteries]
    for lottery, lottery_id, seed in zip(lotteries, next_ids(Lottery, len(lotteries)), seeds, strict=True):
        lottery.pk = lottery_id
        lottery.seed_commitment = algorithm.commitment(seed)
        lottery._state.adding = False  # stored below, as the ORM's save() would mark it
    write_rows(Lottery, [object_row(lottery) for lottery in lotteries])
    seeds_store(list(zip(lotteries, seeds, strict=True)), now=now)
    opened = Opened(
        transitions=[
            transition_row(
                lottery_id=lottery.pk,
                from_state="",
                to_state=_first_state(lottery),
                source=source,
                actor=actor,
                now=now,
            )
            for lottery in lotteries
        ],
        events=[
            lottery_events.lottery_scheduled(lottery)
            if lottery.state == Lottery.State.SCHEDULED
            else lottery_events.lottery_opened(lottery)
            for lottery in lotteries
        ],
    )
    if not defer:
        transitions_record(opened.transitions)
        publish(*opened.events)
    return opened


def _first_state(lottery: Lottery) -> str:
    """The state a new lottery enters first: ``scheduled``, or ``open`` (a pool stored closed opened first)."""
    return Lottery.State.SCHEDULED if lottery.state == Lottery.State.SCHEDULED else Lottery.State.OPEN


def lottery_open(
    *,
    kind: str,
    title: str,
    day: date,
    opens_at: datetime,
    closes_at: datetime,
    prize: str,
    winners_count: int = 1,
    alternates_count: int = 0,
    prize_quantity: int | None = None,
    source: str = TransitionSource.SYSTEM,
    actor: AbstractUser | None = None,
) -> Lottery:
    """Create a lottery (open, or scheduled until ``opens_at``) and publish its seed commitment."""
    now = timezone.now()
    lottery = lottery_new(
        kind=kind,
        title=title,
        day=day,
        opens_at=opens_at,
        closes_at=closes_at,
        prize=prize,
        winners_count=winners_count,
        alternates_count=alternates_count,
        prize_quantity=prize_quantity,
        now=now,
    )
    with transaction.atomic():
        lotteries_open([lottery], source=source, actor=actor, now=now)
    logger.info("lottery opened", extra={"lottery_id": lottery.pk, "kind": kind, "closes_at": closes_at.isoformat()})
    return lottery


def daily_lottery_open(*, day: date | None = None, source: str = TransitionSource.BEAT) -> Lottery:
    """Open the daily lottery of ``day`` (default: today) unless it exists. Idempotent."""
    day = day or lottery_today()
    existing = Lottery.objects.filter(kind=Lottery.Kind.DAILY, day=day).first()
    if existing is not None:
        return existing
    starts, ends = day_bounds(day)
    try:
        return lottery_open(
            kind=Lottery.Kind.DAILY,
            title=f"Daily lottery {day.isoformat()}",
            day=day,
            opens_at=starts,
            closes_at=ends,
            prize=settings.DAILY_LOTTERY_PRIZE,
            source=source,
        )
    except IntegrityError:
        # Another process opened it between our read and our insert.
        return Lottery.objects.get(kind=Lottery.Kind.DAILY, day=day)


# --- Drops ---------------------------------------------------------------------


def drop_create(
    *,
    title: str,
    prize: str,
    prize_quantity: int,
    opens_at: datetime,
    closes_at: datetime,
    winners_count: int | None = None,
    alternates_count: int = 0,
    source: str,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
    request: tuple[str, str] | None = None,
) -> Lottery:
    """Create a drop (``drop_new``'s rules): open now, or ``scheduled`` until ``opens_at``.

    It is stored like every lottery (``lotteries_open``: seed, commitment,
    first transition, LotteryOpened or LotteryScheduled). After the commit
    its timer is queued for the moment it opens or closes
    (``lifecycle.tasks.lottery_timers_arm``), so it opens and closes within
    seconds of its window; beat's sweeps are the safety net. A staff
    ``actor`` needs ``create_drop``; ``None`` is the platform (the command,
    the drops token). ``request`` (Idempotency-Key, terms digest) is stored with
    the drop, in its transaction (``drop_request``).
    """
    require_permission(actor, CREATE_DROP)
    now = now or timezone.now()
    lottery = drop_new(
        title=title,
        prize=prize,
        prize_quantity=prize_quantity,
        opens_at=opens_at,
        closes_at=closes_at,
        winners_count=winners_count,
        alternates_count=alternates_count,
        now=now,
    )
    with transaction.atomic():
        lotteries_open([lottery], source=source, actor=actor, now=now)
        if request is not None:  # a racing retry of the same key fails here, and nothing of this drop stays
            DropRequest.objects.create(actor_id=actor_id(actor), key=request[0], terms=request[1], lottery=lottery)
        if lottery.state == Lottery.State.OPEN:
            _drop_announce(lottery, now=now)
        transaction.on_commit(lambda: _timers_arm([lottery]), robust=True)
    logger.info(
        "drop created",
        extra={
            "lottery_id": lottery.pk,
            "state": lottery.state,
            "opens_at": opens_at.isoformat(),
            "closes_at": closes_at.isoformat(),
            "prize_quantity": lottery.prize_quantity,
        },
    )
    return lottery


@dataclass(frozen=True)
class DropOutcome:
    lottery: Lottery
    replayed: bool  # True: the Idempotency-Key's first drop, returned again; nothing was created


def drop_request(
    *,
    idempotency_key: str | None,
    title: str,
    prize: str,
    prize_quantity: int,
    opens_at: datetime | None,
    closes_at: datetime,
    winners_count: int | None = None,
    alternates_count: int = 0,
    source: str,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> DropOutcome:
    """``drop_create`` as a caller asked it, at most once per Idempotency-Key (``POST /api/v1/drops``).

    ``opens_at`` ``None`` is now. With a key, the first call creates the drop
    and stores the key with it, in one transaction; a retry with the same key
    and the same terms returns that drop (``replayed``), even while the first
    is still committing; the same key with other terms raises
    ``DropKeyReused``. Keys are the caller's own: each staff member's, and the
    platform's (``actor`` ``None``).
    """
    require_permission(actor, CREATE_DROP)
    now = now or timezone.now()
    create = functools.partial(
        drop_create,
        title=title,
        prize=prize,
        prize_quantity=prize_quantity,
        opens_at=opens_at or now,
        closes_at=closes_at,
        winners_count=winners_count,
        alternates_count=alternates_count,
        source=source,
        actor=actor,
        now=now,
    )
    if idempotency_key is None:
        return DropOutcome(create(), replayed=False)
    terms = {"title": title, "prize": prize, "prize_quantity": prize_quantity, "opens_at": opens_at}
    # The terms as the drop will have them: winners_count left out or given as the quantity is one drop.
    winners = prize_quantity if winners_count is None else winners_count
    terms |= {"closes_at": closes_at, "winners_count": winners, "alternates_count": alternates_count}
    return _drop_once(actor, idempotency_key, _terms_digest(terms), create)


def _drop_once(actor: AbstractUser | None, key: str, digest: str, create: Callable[..., Lottery]) -> DropOutcome:
    first = _first_request(actor, key)
    if first is None:
        try:
            return DropOutcome(create(request=(key, digest)), replayed=False)
        except IntegrityError as error:
            if violated_constraint(error) != DROP_REQUEST_KEY_CONSTRAINT:
                raise
        first = _first_request(actor, key)  # the racing call that won has committed
        assert first is not None
    if first.terms != digest:
        raise DropKeyReused(details={"lottery_id": first.lottery_id})
    logger.info("drop request replayed", extra={"lottery_id": first.lottery_id})
    return DropOutcome(first.lottery, replayed=True)


def _terms_digest(terms: dict[str, Any]) -> str:
    """The terms, canonically: ``opens_at`` as asked (absent stays absent: "now" differs between retries), the rest
    as the drop will have them (``drop_request`` fills in ``winners_count``)."""
    canonical = {name: value.isoformat() if isinstance(value, datetime) else value for name, value in terms.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _first_request(actor: AbstractUser | None, key: str) -> DropRequest | None:
    return DropRequest.objects.select_related("lottery").filter(actor_id=actor_id(actor), key=key).first()


@dataclass(frozen=True)
class OpenOutcome:
    lottery: Lottery
    changed: bool  # False: not scheduled any more, or its opens_at is still ahead; nothing was done


def scheduled_lottery_open(*, lottery_id: int, source: str, now: datetime | None = None) -> OpenOutcome:
    """Open a scheduled lottery whose ``opens_at`` has come: scheduled -> open, with LotteryOpened.

    Takes the lottery row with ``SELECT ... FOR UPDATE``, so two openers
    (its timer, beat's sweep) open it once. Idempotent: a lottery no longer
    scheduled, or whose ``opens_at`` is still ahead, is returned unchanged.
    After the commit its closing timer is queued.
    """
    now = now or timezone.now()
    with transaction.atomic():
        lottery = Lottery.objects.select_for_update().filter(pk=lottery_id).first()
        if lottery is None:
            raise LotteryNotFound(details={"lottery_id": lottery_id})
        if lottery.state != Lottery.State.SCHEDULED or now < lottery.opens_at:
            return OpenOutcome(lottery=lottery, changed=False)
        lottery_transition(lottery, Lottery.State.OPEN, source=source, actor=None, now=now)
        publish(lottery_events.lottery_opened(lottery))
        if lottery.kind == Lottery.Kind.DROP:
            _drop_announce(lottery, now=now)
        transaction.on_commit(lambda: _timers_arm([lottery]), robust=True)
    logger.info("lottery opened on schedule", extra={"lottery_id": lottery.pk, "source": source})
    return OpenOutcome(lottery=lottery, changed=True)


def _drop_announce(drop: Lottery, *, now: datetime) -> None:
    """At a drop's opening, in its transaction: one SMS to every player who opted in to drop announcements."""
    broadcast_create(lottery=drop, players=players_opted_in_to_sms(), body=drop_opening_body(drop), now=now)


def _timers_arm(lotteries: Sequence[Lottery]) -> None:
    from lifecycle.tasks import lottery_timers_arm  # the tasks import these services

    lottery_timers_arm(lotteries)


# --- Closing and drawing --------------------------------------------------------


@dataclass(frozen=True)
class CloseOutcome:
    lottery: Lottery
    changed: bool  # False: it was already drawn or cancelled; nothing was done
    draw: Draw | None


class CloseStep(StrEnum):
    """What ``lottery_close`` does with a lottery in a given state at a given time."""

    CLOSE_AND_DRAW = "close and draw"
    DRAW = "draw"  # left closed by an earlier failure, or a full pool
    REFUSE_NOT_DUE = "refuse (window not ended; force to close)"
    REFUSE_NOT_OPEN = "refuse (scheduled: its window has not started)"
    NOTHING = "nothing to do"  # already drawn or cancelled


def close_step(lottery: Lottery, *, now: datetime, force: bool) -> CloseStep:
    """The one decision behind ``lottery_close`` and the close command's ``--dry-run``."""
    if lottery.state in (Lottery.State.DRAWN, Lottery.State.CANCELLED):
        return CloseStep.NOTHING
    if lottery.state == Lottery.State.SCHEDULED:
        return CloseStep.REFUSE_NOT_OPEN
    if lottery.state == Lottery.State.OPEN:
        return CloseStep.CLOSE_AND_DRAW if force or now >= lottery.closes_at else CloseStep.REFUSE_NOT_DUE
    return CloseStep.DRAW


def lottery_close(
    *,
    lottery_id: int,
    source: str,
    actor: AbstractUser | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> CloseOutcome:
    """Close a lottery and draw it, in one transaction, with its events.

    Locks the lottery row (``SELECT ... FOR UPDATE``) for the whole
    transaction. Open -> closed -> drawn (or cancelled with no valid ballot,
    its stakes refunded if it had any); a lottery left ``closed`` by an
    earlier failure, or by a pool's fill, is drawn. Before ``closes_at`` the
    close is refused unless ``force`` (recorded on the transition); a
    scheduled lottery is refused (``lottery_not_open``), forced or not.
    Idempotent: an already drawn or cancelled lottery is returned unchanged.
    The draw's SMS are written in the same transaction (``notifications``).

    A staff ``actor`` needs ``close_lottery``, and ``force_close_lottery``
    for an early close; ``None`` is the platform itself (beat, commands,
    pool fills, the close token).
    """
    with tracing.span("lottery close", {tracing.LOTTERY_ID: lottery_id, "lottery.close.source": source}) as span:
        outcome = _lottery_close(lottery_id=lottery_id, source=source, actor=actor, force=force, now=now)
        if span.is_recording():
            span.set_attributes({"lottery.state": outcome.lottery.state, "lottery.close.changed": outcome.changed})
            if outcome.draw is not None:
                span.set_attribute(tracing.DRAW_ID, outcome.draw.pk)
        return outcome


def _lottery_close(
    *, lottery_id: int, source: str, actor: AbstractUser | None, force: bool, now: datetime | None
) -> CloseOutcome:
    now = now or timezone.now()
    require_permission(actor, CLOSE_LOTTERY)
    with transaction.atomic():
        lottery = Lottery.objects.select_for_update().filter(pk=lottery_id).first()
        if lottery is None:
            raise LotteryNotFound(details={"lottery_id": lottery_id})
        step = close_step(lottery, now=now, force=force)
        if step == CloseStep.NOTHING:
            return CloseOutcome(lottery=lottery, changed=False, draw=getattr(lottery, "draw", None))
        if step == CloseStep.REFUSE_NOT_OPEN:
            raise LotteryNotOpen(details={"lottery_id": lottery.pk, "opens_at": lottery.opens_at.isoformat()})
        if step == CloseStep.REFUSE_NOT_DUE:
            raise LotteryNotDue(details={"lottery_id": lottery.pk, "closes_at": lottery.closes_at.isoformat()})
        if step == CloseStep.CLOSE_AND_DRAW:
            early = now < lottery.closes_at
            if early:
                require_permission(actor, FORCE_CLOSE_LOTTERY)
            lottery_transition(lottery, Lottery.State.CLOSED, source=source, actor=actor, forced=early, now=now)
            publish(lottery_events.lottery_closed(lottery, source=source, forced=early))
        draw = draw_run(lottery=lottery, now=now)
        if draw is None:
            reason = "no valid ballots"
            lottery_transition(lottery, Lottery.State.CANCELLED, source=source, actor=actor, now=now, note=reason)
            refunds = REFUNDS[lottery.kind](lottery) if lottery.kind in REFUNDS else []
            publish(lottery_events.lottery_cancelled(lottery, source=source, reason=reason, stakes=refunds))
        else:
            lottery_transition(lottery, Lottery.State.DRAWN, source=source, actor=actor, now=now)
            # The winners' SMS (and a drop's "not selected" ones) in the awards' own transaction, sent after commit.
            draw_notifications_create(lottery=lottery, draw=draw, now=now)
            # After the awards' events (written by draw_run): consumers see the awards, then "drawn".
            publish(lottery_drawn(lottery, draw=draw, source=source))
    return CloseOutcome(lottery=lottery, changed=True, draw=draw)
