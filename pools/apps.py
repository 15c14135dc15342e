from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"

    def ready(self) -> None:
        # The two places where a lower floor asks the pool wing something, plugged in here.
        from lifecycle.services import REFUNDS
        from lotteries.models import Lottery
        from outbox.inbox import REPLAYERS
        from pools.consumer import CONSUMER, replay_dead_letter
        from pools.selectors import stakes_for_refund

        REPLAYERS[CONSUMER] = replay_dead_letter
        REFUNDS[Lottery.Kind.POOL] = stakes_for_refund
