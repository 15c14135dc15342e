"""Read side of the pool wing."""

from lotteries.events import RefundStake
from lotteries.models import Lottery
from pools.models import Stake


def stakes_for_refund(lottery: Lottery) -> list[RefundStake]:
    """A cancelled pool's stakes, in the order they were applied, for its LotteryCancelled event."""
    return [
        RefundStake(stake_id=stake_id, player_id=player_id, amount=amount, currency=currency)
        for stake_id, player_id, amount, currency in Stake.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("stake_id", "player_id", "amount", "currency")
    ]
