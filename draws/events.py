"""AwardCreated (topic lottery.v1.award) and LotteryDrawn (lottery.v1.lifecycle), both keyed by the lottery id."""

from core import currencies
from draws.models import Draw, LotteryAward
from lotteries.events import lottery_event
from lotteries.models import Lottery
from outbox import events
from outbox.events import DomainEvent


def award_created(award: LotteryAward, *, draw: Draw, player_external_id: str) -> DomainEvent:
    """A new award: a winner's, or a promoted alternate's (``promotes_award_id`` names the forfeited award)."""
    return DomainEvent(
        type=events.AWARD_CREATED,
        aggregate_type="lottery",
        aggregate_id=str(award.lottery_id),
        data={
            "lottery_id": award.lottery_id,
            "award_id": award.pk,
            "player_id": award.player_id,
            "player_external_id": player_external_id,
            "rank": award.rank,
            "prize": award.prize,
            # A decimal string with the currency's minor digits ("15.97" EUR, "1500" JPY).
            "win_sum": None if award.win_sum is None else currencies.format_money(award.win_sum, award.currency),
            "currency": award.currency or None,
            "status": award.status,
            "draw_id": draw.pk,
            "entries_digest": draw.entries_digest,
            "claim_deadline": None if award.claim_deadline is None else award.claim_deadline.isoformat(),
            "promotes_award_id": award.promoted_from_id,
            "alternate_rank": award.alternate_rank,
        },
    )


def award_forfeited(award: LotteryAward, *, promoted: LotteryAward | None) -> DomainEvent:
    """A drop's award forfeited (not claimed in time, or its winner banned), and the award that replaced it."""
    return lottery_event(
        events.AWARD_FORFEITED,
        award.lottery,
        {
            "award_id": award.pk,
            "player_id": award.player_id,
            "rank": award.rank,
            "reason": award.forfeit_reason,
            "forfeited_at": award.forfeited_at.isoformat() if award.forfeited_at else None,
            "draw_id": award.draw_id,
            "promoted_award_id": promoted.pk if promoted is not None else None,
        },
    )


def lottery_drawn(lottery: Lottery, *, draw: Draw, source: str) -> DomainEvent:
    return lottery_event(
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
            "alternate_ballot_ids": list(draw.alternate_ballot_ids),
            "unawarded_quantity": draw.unawarded_quantity,
        },
    )
