"""A lottery's own rules: its days, what a new one is, what a winner is paid, and its transitions.

Opening (with a seed) and closing (with a draw) need the draws app too: they
are ``lifecycle.services``. Every transition is recorded as a
``LotteryTransition`` under the lottery's row lock.
"""

import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from core import currencies
from core.authorization import actor_id
from core.db import write_rows
from lotteries.errors import InvalidLottery
from lotteries.models import Lottery, LotteryTransition

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


def lottery_new(
    *,
    kind: str,
    title: str,
    day: date,
    opens_at: datetime,
    closes_at: datetime,
    prize: str,
    winners_count: int = 1,
    prize_quantity: int | None = None,
    alternates_count: int = 0,
    now: datetime | None = None,
    **pool_terms: Any,
) -> Lottery:
    """A new lottery, validated and not yet saved: the one definition behind every way of opening one.

    It is ``open``, or ``scheduled`` when ``opens_at`` is still ahead (it
    opens then: ``lifecycle.services.scheduled_lottery_open``). Each winner
    gets one unit of the prize, so ``winners_count`` is at most
    ``prize_quantity`` (by default the same). ``lifecycle.services.lotteries_open``
    gives it its seed commitment and stores it with its seed, its first
    transition and its life-cycle event. ``pool_terms`` are a pool's
    ``game_id``, ``currency``, ``pool_size``, ``payout_ratio`` and ``pot``.
    """
    quantity = winners_count if prize_quantity is None else prize_quantity
    if closes_at <= opens_at:
        raise InvalidLottery("closes_at must be after opens_at.", details={"field": "closes_at"})
    if winners_count < 1:
        raise InvalidLottery("winners_count must be at least 1.", details={"field": "winners_count"})
    if winners_count > quantity:
        raise InvalidLottery(
            "winners_count cannot exceed the prize quantity: each winner gets one unit.",
            details={"field": "winners_count", "prize_quantity": quantity},
        )
    if alternates_count < 0:
        raise InvalidLottery("alternates_count cannot be negative.", details={"field": "alternates_count"})
    now = now or timezone.now()
    return Lottery(
        kind=kind,
        state=Lottery.State.SCHEDULED if opens_at > now else Lottery.State.OPEN,
        title=title,
        day=day,
        opens_at=opens_at,
        closes_at=closes_at,
        prize=prize,
        prize_quantity=quantity,
        winners_count=winners_count,
        alternates_count=alternates_count,
        created_at=now,
        updated_at=now,
        **pool_terms,
    )


# A drop's prize quantity and alternates are bounded: every winner and alternate is drawn, and awarded, at once.
DROP_MAX_QUANTITY = 100_000
DROP_MAX_ALTERNATES = 100_000


def drop_new(
    *,
    title: str,
    prize: str,
    prize_quantity: int,
    opens_at: datetime,
    closes_at: datetime,
    winners_count: int | None = None,
    alternates_count: int = 0,
    now: datetime | None = None,
) -> Lottery:
    """A new drop, validated and not yet saved (``lottery_new`` with a drop's rules).

    Its day is the day its window closes; ``winners_count`` is the prize
    quantity unless given; it is ``scheduled`` when ``opens_at`` is ahead.
    A window that has already ended is refused: such a drop could take no ballot.
    """
    now = now or timezone.now()
    for field, text in (("title", title), ("prize", prize)):
        if not text.strip():
            raise InvalidLottery(f"A drop needs a {field}.", details={"field": field})
    if not 1 <= prize_quantity <= DROP_MAX_QUANTITY:
        raise InvalidLottery(
            f"prize_quantity must be between 1 and {DROP_MAX_QUANTITY}.", details={"field": "prize_quantity"}
        )
    if not 0 <= alternates_count <= DROP_MAX_ALTERNATES:
        raise InvalidLottery(
            f"alternates_count must be between 0 and {DROP_MAX_ALTERNATES}.", details={"field": "alternates_count"}
        )
    if closes_at <= now:
        raise InvalidLottery("closes_at must be in the future.", details={"field": "closes_at"})
    return lottery_new(
        kind=Lottery.Kind.DROP,
        title=title.strip(),
        day=lottery_today(now=closes_at),
        opens_at=opens_at,
        closes_at=closes_at,
        prize=prize.strip(),
        prize_quantity=prize_quantity,
        winners_count=prize_quantity if winners_count is None else winners_count,
        alternates_count=alternates_count,
        now=now,
    )


def lottery_win_sum(lottery: Lottery) -> Decimal | None:
    """What a winner is paid: a pool's pot x payout ratio, rounded down to its currency's minor unit; else none."""
    if lottery.kind != Lottery.Kind.POOL:
        return None
    assert lottery.payout_ratio is not None
    return currencies.round_down(lottery.pot * lottery.payout_ratio, lottery.currency)


def transition_row(
    *,
    lottery_id: int,
    from_state: str,
    to_state: str,
    source: str,
    now: datetime,
    actor: AbstractUser | None = None,
    forced: bool = False,
    note: str = "",
) -> dict[str, Any]:
    """One ``LotteryTransition`` as a row for ``transitions_record``."""
    return {
        "lottery_id": lottery_id,
        "from_state": from_state,
        "to_state": to_state,
        "source": source,
        "actor_id": actor_id(actor),
        "forced": forced,
        "note": note,
        "created_at": now,
    }


def transitions_record(rows: Sequence[dict[str, Any]]) -> None:
    """Record transitions (rows from ``transition_row``): one INSERT for a few, COPY for a batch of pools."""
    write_rows(LotteryTransition, rows)


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
    transitions_record(
        [
            transition_row(
                lottery_id=lottery.pk,
                from_state=from_state,
                to_state=to_state,
                source=source,
                actor=actor,
                forced=forced,
                note=note,
                now=now,
            )
        ]
    )
    lottery.state = to_state
    logger.info(
        "lottery transition",
        extra={"lottery_id": lottery.pk, "from": from_state, "to": to_state, "source": source, "forced": forced},
    )
