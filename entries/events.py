"""LotteryEntryCreated (topic lottery.v1.entry, key: the lottery id)."""

from entries.models import Ballot
from outbox import events
from outbox.events import DomainEvent


def entry_created(ballot: Ballot, *, player_external_id: str) -> DomainEvent:
    return DomainEvent(
        type=events.LOTTERY_ENTRY_CREATED,
        aggregate_type="lottery",
        aggregate_id=str(ballot.lottery_id),
        data={
            "lottery_id": ballot.lottery_id,
            "ballot_id": ballot.pk,
            "player_id": ballot.player_id,
            "player_external_id": player_external_id,
            "created_at": ballot.created_at.isoformat(),
        },
        occurred_at=ballot.created_at,
    )
