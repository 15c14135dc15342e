"""Life-cycle events of a lottery (topic lottery.v1.lifecycle, key: the lottery id)."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core import currencies
from lotteries.models import Lottery
from outbox import events
from outbox.events import DomainEvent


@dataclass(frozen=True)
class RefundStake:
    """A stake of a cancelled pool, which the game service must refund (the ``stakes`` of LotteryCancelled)."""

    stake_id: str
    player_id: int
    amount: Decimal
    currency: str


def lottery_event(event_type: str, lottery: Lottery, data: dict[str, Any]) -> DomainEvent:
    return DomainEvent(
        type=event_type,
        aggregate_type="lottery",
        aggregate_id=str(lottery.pk),
        data={"lottery_id": lottery.pk, "kind": lottery.kind, **data},
    )


def _lottery_terms(lottery: Lottery) -> dict[str, Any]:
    """What a lottery is: its window, its prize and quantity, its winners and alternates, its seed commitment."""
    return {
        "title": lottery.title,
        "day": lottery.day.isoformat(),
        "opens_at": lottery.opens_at.isoformat(),
        "closes_at": lottery.closes_at.isoformat(),
        "prize": lottery.prize,
        "prize_quantity": lottery.prize_quantity,
        "winners_count": lottery.winners_count,
        "alternates_count": lottery.alternates_count,
        "seed_commitment": lottery.seed_commitment,
    }


def lottery_opened(lottery: Lottery) -> DomainEvent:
    """The lottery takes ballots from now on: at its creation, or at ``opens_at`` for a scheduled one."""
    return lottery_event(events.LOTTERY_OPENED, lottery, _lottery_terms(lottery))


def lottery_scheduled(lottery: Lottery) -> DomainEvent:
    """A lottery created ahead of its window (a drop): its terms and seed commitment, before it opens."""
    return lottery_event(events.LOTTERY_SCHEDULED, lottery, _lottery_terms(lottery))


def lottery_closed(lottery: Lottery, *, source: str, forced: bool) -> DomainEvent:
    return lottery_event(events.LOTTERY_CLOSED, lottery, {"source": source, "forced": forced})


def lottery_cancelled(lottery: Lottery, *, source: str, reason: str, stakes: Sequence[RefundStake] = ()) -> DomainEvent:
    # "stakes" names what the game service must refund (a cancelled pool's stakes),
    # each amount a decimal string with its currency's minor digits ("2.50" EUR).
    refunds = [
        {
            "stake_id": stake.stake_id,
            "player_id": stake.player_id,
            "amount": currencies.format_money(stake.amount, stake.currency),
            "currency": stake.currency,
        }
        for stake in stakes
    ]
    return lottery_event(events.LOTTERY_CANCELLED, lottery, {"source": source, "reason": reason, "stakes": refunds})
