"""LotteryEntryCreated (topic lottery.v1.entry, key: the lottery id)."""

from datetime import datetime

from outbox import events
from outbox.events import DomainEvent


def entry_created(
    *,
    lottery_id: int,
    ballot_id: int,
    player_id: int,
    player_external_id: str,
    created_at: datetime,
    trace: dict[str, str] | None = None,
) -> DomainEvent:
    """A ballot accepted, from the API or from a stake (built from plain values: pools make hundreds at once).

    ``trace``: the stake's own trace, when a batch of stakes publishes it.
    """
    return DomainEvent(
        type=events.LOTTERY_ENTRY_CREATED,
        aggregate_type="lottery",
        aggregate_id=str(lottery_id),
        data={
            "lottery_id": lottery_id,
            "ballot_id": ballot_id,
            "player_id": player_id,
            "player_external_id": player_external_id,
            "created_at": created_at.isoformat(),
        },
        occurred_at=created_at,
        trace=trace,
    )
