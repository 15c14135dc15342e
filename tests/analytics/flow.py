"""A short flow through the real services: what a business-metrics test, or the operations page's, starts from.

In the current hour: a drop with three entrants and a cheater (a fraud rejection), three refusals that
store nothing, its draw with the winner's SMS sent and a loser's not-selected SMS failed; three stakes
that fill a EUR pool (drawn: a win_sum), the same stake again (a duplicate), a message that is not
JSON (a dead letter, produced to the broker's DLQ) and a GBP pool cancelled with its stake refunded.
"""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from core import tallies
from entries.errors import BallotLimitReached, DuplicateEntry
from entries.models import Player
from lifecycle.services import lottery_close
from lotteries.errors import LotteryNotFound
from lotteries.models import Lottery
from notifications.models import Notification
from notifications.services import notification_send
from pools.consumer import Record, handle_batch
from pools.services import pool_expire
from tests.sms import fast_gateway, set_live


@dataclass(frozen=True)
class Flow:
    drop: Lottery
    pool: Lottery
    cancelled_pool: Lottery
    expected: dict[str, Any]  # the hourly table's totals over the flow's hours


def stake_record(offset: int, *, player: str, game: str, amount: str, currency: str, stake_id: str = "") -> Record:
    body = {"stakeId": stake_id or f"flow-{uuid.uuid4().hex[:12]}", "playerId": player, "gameId": game,
            "amount": amount, "currency": currency, "occurredAt": timezone.now().isoformat()}  # fmt: skip
    return Record(settings.STAKES_TOPIC, 0, offset, None, json.dumps(body).encode(), [])


def short_flow(
    *, make_player: Callable[..., Player], make_lottery: Callable[..., Lottery], enter: Any, settings: Any
) -> Flow:
    """``settings`` is pytest-django's fixture: the GBP pool's wait is made a second long."""
    fast_gateway()
    drop = make_lottery(prize_quantity=1)
    entrants = [make_player() for _ in range(3)]
    for player in entrants:
        enter(drop, player)
    with pytest.raises(DuplicateEntry):  # a fraud rejection: another player with the first one's phone
        enter(drop, make_player(phone_number=entrants[0].phone_number))
    with pytest.raises(BallotLimitReached):
        enter(drop, entrants[1])
    with pytest.raises(BallotLimitReached):
        enter(drop, entrants[2])
    ghost = Lottery(pk=(Lottery.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1_000_000)
    with pytest.raises(LotteryNotFound):
        enter(ghost, entrants[0])
    tallies.flush()

    lottery_close(lottery_id=drop.pk, source="system", force=True)
    winner_sms = Notification.objects.get(lottery=drop, kind=Notification.Kind.WINNER)
    assert notification_send(notification_id=winner_sms.pk).sent == 1
    set_live(SMS_FAILURE_RATE=1, SMS_MAX_ATTEMPTS=1)
    loser_sms = Notification.objects.filter(lottery=drop, kind=Notification.Kind.NOT_SELECTED).first()
    assert loser_sms is not None
    notification_send(notification_id=loser_sms.pk)
    fast_gateway()

    game = f"flow-{uuid.uuid4().hex[:8]}"
    first = stake_record(1, player="fp-1", game=game, amount="10.00", currency="EUR")
    handle_batch([
        first,
        stake_record(2, player="fp-2", game=game, amount="10.00", currency="EUR"),
        stake_record(3, player="fp-3", game=game, amount="10.00", currency="EUR"),
        Record(first.topic, 0, 4, None, first.value, []),  # the first stake again: a duplicate
        Record(first.topic, 0, 5, None, b"{not json", []),  # a dead letter
    ])  # fmt: skip
    pool = Lottery.objects.get(kind=Lottery.Kind.POOL, game_id=game, currency="EUR")
    lottery_close(lottery_id=pool.pk, source="pool_fill")
    settings.POOL_MAX_WAIT_SECONDS = 1
    handle_batch([stake_record(6, player="fp-4", game=game, amount="7.50", currency="GBP")])
    short = Lottery.objects.get(kind=Lottery.Kind.POOL, game_id=game, currency="GBP")
    time.sleep(max(0.0, (short.closes_at - timezone.now()).total_seconds()) + 0.05)
    assert pool_expire(lottery_id=short.pk)

    expected = {
        "ballots_accepted": 3 + 3 + 1,  # the drop's, the EUR pool's three entrants, the GBP pool's one
        "fraud_rejections": 1,
        "refused_ballot_limit_reached": 2,
        "refused_lottery_not_found": 1,
        "ballots_refused": 4,
        "stakes_received": 6,
        "stakes_applied": 4,
        "stakes_duplicate": 1,
        "stakes_dead_lettered": 1,
        "staked_revenue": {"EUR": Decimal("30.00"), "GBP": Decimal("7.50")},
        "payouts": {"EUR": Decimal("27.00")},
        "prizes_awarded": 2,
        "draws": 2,
        "lotteries_cancelled": 1,
        "refunds": {"GBP": Decimal("7.50")},
        "sms_sent": 1,
        "sms_failed": 1,
    }
    return Flow(drop=drop, pool=pool, cancelled_pool=short, expected=expected)
