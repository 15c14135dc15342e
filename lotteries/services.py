"""The lottery life cycle: opening, closing and drawing.

Every caller (beat, the close command, admin, the API) goes through
``lottery_close``; it is atomic, guarded by the lottery's row lock and
idempotent, so any number of concurrent calls yield one draw.
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.authorization import actor_id, require_permission
from draws import algorithm
from draws.models import Draw
from draws.services import draw_run, seed_store
from lotteries import events as lottery_events
from lotteries.errors import InvalidLottery, LotteryNotDue, LotteryNotFound
from lotteries.models import CLOSE_LOTTERY, FORCE_CLOSE_LOTTERY, Lottery, LotteryTransition, TransitionSource
from lotteries.selectors import stakes_for_refund
from outbox.services import publish

logger = logging.getLogger(__name__)


def lottery_zone() -> ZoneInfo:
    return ZoneInfo(settings.LOTTERY_TIME_ZONE)


def lottery_today(*, now: datetime | None = None) -> date:
    """Today's date in LOTTERY_TIME_ZONE."""
    return timezone.localdate(now or timezone.now(), lottery_zone())


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Midnight to midnight of ``day`` in LOTTERY_TIME_ZONE, as aware datetimes."""
    zone = lottery_zone()
    return (
        datetime.combine(day, time.min, tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone),
    )


def lottery_open(
    *,
    kind: str,
    title: str,
    day: date,
    opens_at: datetime,
    closes_at: datetime,
    prize: str,
    winners_count: int = 1,
    source: str = TransitionSource.SYSTEM,
    actor: AbstractUser | None = None,
) -> Lottery:
    """Create an open lottery and publish its seed commitment.

    The seed is drawn from a CSPRNG here, before any ballot can exist, and
    kept secret until the draw.
    """
    if closes_at <= opens_at:
        raise InvalidLottery("closes_at must be after opens_at.")
    if winners_count < 1:
        raise InvalidLottery("winners_count must be at least 1.")
    seed = algorithm.new_seed()
    with transaction.atomic():
        lottery = Lottery.objects.create(
            kind=kind,
            title=title,
            day=day,
            opens_at=opens_at,
            closes_at=closes_at,
            prize=prize,
            winners_count=winners_count,
            seed_commitment=algorithm.commitment(seed),
        )
        seed_store(lottery=lottery, seed=seed)
        LotteryTransition.objects.create(
            lottery=lottery, to_state=Lottery.State.OPEN, source=source, actor_id=actor_id(actor)
        )
        publish(lottery_events.lottery_opened(lottery))
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


@dataclass(frozen=True)
class CloseOutcome:
    lottery: Lottery
    changed: bool  # False: it was already drawn or cancelled; nothing was done
    draw: Draw | None


class CloseStep(StrEnum):
    """What ``lottery_close`` does with a lottery in a given state at a given time."""

    CLOSE_AND_DRAW = "close and draw"
    DRAW = "draw"  # left closed by an earlier failure
    REFUSE_NOT_DUE = "refuse (window not ended; force to close)"
    NOTHING = "nothing to do"  # already drawn or cancelled


def close_step(lottery: Lottery, *, now: datetime, force: bool) -> CloseStep:
    """The one decision behind ``lottery_close`` and the close command's ``--dry-run``."""
    if lottery.state in (Lottery.State.DRAWN, Lottery.State.CANCELLED):
        return CloseStep.NOTHING
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
    transaction. Open -> closed -> drawn (or cancelled with no valid ballot);
    a lottery left ``closed`` by an earlier failure is drawn. Before
    ``closes_at`` the close is refused unless ``force`` (recorded on the
    transition). Idempotent: an already drawn or cancelled lottery is
    returned unchanged.

    A staff ``actor`` needs ``close_lottery``, and ``force_close_lottery``
    for an early close; ``None`` is the platform itself (beat, commands,
    pool fills, the close token).
    """
    now = now or timezone.now()
    require_permission(actor, CLOSE_LOTTERY)
    with transaction.atomic():
        lottery = Lottery.objects.select_for_update().filter(pk=lottery_id).first()
        if lottery is None:
            raise LotteryNotFound(details={"lottery_id": lottery_id})
        step = close_step(lottery, now=now, force=force)
        if step == CloseStep.NOTHING:
            return CloseOutcome(lottery=lottery, changed=False, draw=getattr(lottery, "draw", None))
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
            refunds = stakes_for_refund(lottery=lottery) if lottery.kind == Lottery.Kind.POOL else []
            publish(lottery_events.lottery_cancelled(lottery, source=source, reason=reason, stakes=refunds))
        else:
            lottery_transition(lottery, Lottery.State.DRAWN, source=source, actor=actor, now=now)
            # After the awards' events (written by draw_run): consumers see the awards, then "drawn".
            publish(lottery_events.lottery_drawn(lottery, draw=draw, source=source))
    return CloseOutcome(lottery=lottery, changed=True, draw=draw)


def lottery_transition(
    lottery: Lottery,
    to_state: str,
    *,
    source: str,
    actor: AbstractUser | None,
    now: datetime,
    forced: bool = False,
    note: str = "",
) -> None:
    """Move a lottery to ``to_state`` and record the transition.

    The caller holds the lottery's row lock (``SELECT ... FOR UPDATE``) in
    its transaction, and publishes the matching life-cycle event.
    """
    from_state = lottery.state
    updated = Lottery.objects.filter(pk=lottery.pk, state=from_state).update(state=to_state, updated_at=now)
    if updated != 1:
        raise RuntimeError(f"lottery {lottery.pk} left state {from_state} under its lock")
    LotteryTransition.objects.create(
        lottery=lottery,
        from_state=from_state,
        to_state=to_state,
        source=source,
        actor_id=actor_id(actor),
        forced=forced,
        note=note,
    )
    lottery.state = to_state
    logger.info(
        "lottery transition",
        extra={"lottery_id": lottery.pk, "from": from_state, "to": to_state, "source": source, "forced": forced},
    )
