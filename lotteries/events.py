"""Life-cycle events of a lottery (topic lottery.v1.lifecycle, key: the lottery id)."""

from collections.abc import Sequence
from typing import Any

from core import currencies
from draws.models import Draw
from lotteries.models import Lottery
from lotteries.selectors import RefundStake
from outbox import events
from outbox.events import DomainEvent


def _event(event_type: str, lottery: Lottery, data: dict[str, Any]) -> DomainEvent:
    return DomainEvent(
        type=event_type,
        aggregate_type="lottery",
        aggregate_id=str(lottery.pk),
        data={"lottery_id": lottery.pk, "kind": lottery.kind, **data},
    )


def lottery_opened(lottery: Lottery) -> DomainEvent:
    return _event(
        events.LOTTERY_OPENED,
        lottery,
        {
            "title": lottery.title,
            "day": lottery.day.isoformat(),
            "opens_at": lottery.opens_at.isoformat(),
            "closes_at": lottery.closes_at.isoformat(),
            "prize": lottery.prize,
            "winners_count": lottery.winners_count,
            "seed_commitment": lottery.seed_commitment,
        },
    )


def lottery_closed(lottery: Lottery, *, source: str, forced: bool) -> DomainEvent:
    return _event(events.LOTTERY_CLOSED, lottery, {"source": source, "forced": forced})


def lottery_drawn(lottery: Lottery, *, draw: Draw, source: str) -> DomainEvent:
    return _event(
        events.LOTTERY_DRAWN,
        lottery,
        {
            "source": source,
            "draw_id": draw.pk,
            "algorithm_version": draw.algorithm_version,
            "seed": draw.seed,
            "entries_digest": draw.entries_digest,
            "entries_count": draw.entries_count,
            "winning_ballot_ids": list(draw.winning_ballot_ids),
        },
    )


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
    return _event(events.LOTTERY_CANCELLED, lottery, {"source": source, "reason": reason, "stakes": refunds})
