"""Pools without the Kafka loop: expiry, replay of a dead letter, per-game terms, admin."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from entries.models import Player
from entries.services import player_ban, player_unban
from lifecycle.tasks import close_due_lotteries
from lotteries.models import Lottery
from outbox.inbox import counters_total, dead_letters_replay
from outbox.models import DeadLetter, OutboxEvent
from pools.consumer import Record, handle_batch
from pools.models import PoolGame, Stake
from pools.services import pool_expire, pools_enter
from pools.stake_messages import StakeMessage
from pools.tasks import expire_pools

pytestmark = pytest.mark.django_db


def record(offset: int, **fields) -> Record:
    body = {"stakeId": f"s-{offset}", "playerId": "p", "gameId": "g", "amount": "2.00", "currency": "EUR",
            "occurredAt": timezone.now().isoformat(), **fields}  # fmt: skip
    return Record(settings.STAKES_TOPIC, 0, offset, None, json.dumps(body).encode(), [])


def test_a_pool_short_of_players_is_cancelled_after_its_wait_with_its_stakes_listed(make_player):
    players = [make_player(), make_player()]
    now = timezone.now()
    stakes = [
        StakeMessage(
            stake_id="exp-1",
            player_external_id="a",
            game_id="slow-game",
            amount=Decimal("3.00"),
            currency="EUR",
            occurred_at=now,
            player_id=players[0].pk,
        ),
        StakeMessage(
            stake_id="exp-2",
            player_external_id="a",
            game_id="slow-game",
            amount=Decimal("1.00"),
            currency="EUR",
            occurred_at=now,
            player_id=players[0].pk,
        ),  # same player: pot only
        StakeMessage(
            stake_id="exp-3",
            player_external_id="b",
            game_id="slow-game",
            amount=Decimal("2.50"),
            currency="EUR",
            occurred_at=now,
            player_id=players[1].pk,
        ),
    ]
    from django.db import transaction

    with transaction.atomic():
        pools_enter(stakes=stakes, now=now)
    pool = Lottery.objects.get(game_id="slow-game")
    assert (pool.state, pool.pot, pool.ballots.count()) == ("open", Decimal("6.50"), 2)

    assert pool_expire(lottery_id=pool.pk, now=pool.closes_at - timedelta(seconds=1)) is False  # not yet
    assert expire_pools.run() == []
    cancelled = pool_expire(lottery_id=pool.pk, now=pool.closes_at)

    pool.refresh_from_db()
    assert cancelled and pool.state == "cancelled"
    assert pool_expire(lottery_id=pool.pk, now=pool.closes_at) is False  # idempotent
    event = json.loads(OutboxEvent.objects.get(key=str(pool.pk), event_type="LotteryCancelled").value)
    assert [s["stake_id"] for s in event["data"]["stakes"]] == ["exp-1", "exp-2", "exp-3"]
    assert event["data"]["stakes"][1] == {"stake_id": "exp-2", "player_id": players[0].pk, "amount": "1.00",
                                          "currency": "EUR"}  # fmt: skip


def test_a_games_own_terms_apply_to_its_next_pool(make_player):
    PoolGame.objects.create(game_id="big-game", pool_size=5, payout_ratio=Decimal("0.5"))
    from django.db import transaction

    with transaction.atomic():
        pools_enter(
            stakes=[
                StakeMessage(
                    stake_id="big-1",
                    player_external_id="x",
                    game_id="big-game",
                    amount=Decimal("1.00"),
                    currency="USD",
                    occurred_at=timezone.now(),
                    player_id=make_player().pk,
                )
            ]
        )

    pool = Lottery.objects.get(game_id="big-game")
    assert (pool.pool_size, pool.payout_ratio, pool.currency) == (5, Decimal("0.5"), "USD")


def test_a_banned_players_dead_letter_is_applied_when_replayed_after_the_unban(kafka_broker):
    player = Player.objects.create_user(username="ext-p", external_account_id="p")
    player_ban(player_id=player.pk, reason="checks", actor=None)
    handle_batch([record(7)])
    letter = DeadLetter.objects.get(offset=7)
    assert (letter.reason, letter.status) == ("player_banned", "open")

    assert dead_letters_replay(ids=[letter.pk], actor=None) == {"dead_lettered": 1}  # still banned: a new open letter
    player_unban(player_id=player.pk, reason="cleared", actor=None)
    reopened = DeadLetter.objects.get(offset=7, status="open")
    outcomes = dead_letters_replay(ids=[reopened.pk], actor=None)

    assert outcomes == {"applied": 1}
    assert Stake.objects.filter(stake_id="s-7", player=player).count() == 1
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"replayed"}
    totals = counters_total(consumer="stakes")
    assert (totals["received"], totals["applied"], totals["dead_lettered"]) == (3, 1, 2)


def test_stake_pool_and_dead_letter_pages_load_in_admin(kafka_broker, client, make_player):
    handle_batch([record(1), record(2, amount="oops")])
    staff = make_player(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)

    for name in ["pools_stake", "outbox_deadletter", "outbox_consumercounter", "pools_poolgame"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    letter = DeadLetter.objects.get()
    page = client.get(reverse("admin:outbox_deadletter_change", args=[letter.pk])).content.decode()
    assert "invalid_amount" in page and "oops" in page
    metrics = client.get("/metrics").content.decode()
    assert 'lottery_consumer_messages{consumer="stakes",outcome="received"} 2.0' in metrics
    assert 'lottery_consumer_messages{consumer="stakes",outcome="dead_lettered"} 1.0' in metrics
    assert 'lottery_dead_letters_open{consumer="stakes",reason="invalid_amount"} 1.0' in metrics


def test_a_full_pool_whose_draw_task_was_lost_is_drawn_by_the_close_sweep(make_player):
    from django.db import transaction

    from lifecycle.tasks import close_lottery

    now = timezone.now()
    players = [make_player() for _ in range(3)]
    with transaction.atomic():
        filled = pools_enter(
            stakes=[
                StakeMessage(
                    stake_id=f"lost-{n}",
                    player_external_id=str(n),
                    game_id="lost-game",
                    amount=Decimal("1.00"),
                    currency="EUR",
                    occurred_at=now,
                    player_id=p.pk,
                )
                for n, p in enumerate(players)
            ]
        )
    # (no worker ran the queued draw)
    assert Lottery.objects.get(pk=filled[0]).state == "closed"

    swept = close_due_lotteries.run()
    for lottery_id in swept:
        close_lottery.apply(args=(lottery_id,))

    assert filled[0] in swept
    assert Lottery.objects.get(pk=filled[0]).state == "drawn"


def test_a_pool_that_fills_closes_and_the_next_stake_opens_a_new_one_in_the_same_batch(make_player):
    from django.db import transaction

    players = [make_player() for _ in range(5)]
    now = timezone.now()

    def stake(n: int, player: Player, amount: str) -> StakeMessage:
        return StakeMessage(
            stake_id=f"fill-{n}",
            player_external_id=player.username,
            game_id="fill-game",
            amount=Decimal(amount),
            currency="EUR",
            occurred_at=now,
            player_id=player.pk,
        )

    with transaction.atomic():
        pools_enter(stakes=[stake(1, players[0], "1.00"), stake(2, players[1], "2.00")], now=now)
    first = Lottery.objects.get(game_id="fill-game")
    assert (first.state, first.pot) == ("open", Decimal("3.00"))

    # One batch: a second stake of a player already in (pot only), the third
    # player (the pool fills), then two players who open and join the next pool.
    with transaction.atomic():
        filled = pools_enter(
            stakes=[
                stake(3, players[0], "0.50"),
                stake(4, players[2], "4.00"),
                stake(5, players[3], "8.00"),
                stake(6, players[4], "16.00"),
            ],
            now=now,
        )

    first.refresh_from_db()
    second = Lottery.objects.exclude(pk=first.pk).get(game_id="fill-game")
    assert filled == [first.pk]
    assert (first.state, first.pot, first.ballots.count(), first.stakes.count()) == ("closed", Decimal("7.50"), 3, 4)
    assert list(first.transitions.order_by("id").values_list("from_state", "to_state", "source", "note")) == [
        ("", "open", "pool_fill", ""),
        ("open", "closed", "pool_fill", "pool full"),
    ]
    assert (second.state, second.pot, second.ballots.count()) == ("open", Decimal("24.00"), 2)
    assert list(second.transitions.values_list("to_state", flat=True)) == ["open"]
    assert Stake.objects.get(stake_id="fill-3").ballot_id is None  # the player's second stake: pot only
    events = list(OutboxEvent.objects.filter(key=str(first.pk)).order_by("id").values_list("event_type", flat=True))
    assert events == ["LotteryOpened", *["LotteryEntryCreated"] * 3, "LotteryClosed"]


@pytest.mark.django_db(transaction=True)
def test_two_transactions_opening_a_pool_for_the_same_new_game_one_retries_and_joins_it(make_player):
    """Consumers of different partitions can race to open a game's first pool: one wins, the other retries."""
    import threading

    from django.db import IntegrityError, connection, transaction

    first, second = make_player(), make_player()
    now = timezone.now()
    first_inserted = threading.Event()

    def open_and_hold() -> None:
        try:
            with transaction.atomic():
                pools_enter(
                    stakes=[
                        StakeMessage(
                            stake_id="race-1",
                            player_external_id="a",
                            game_id="race-game",
                            amount=Decimal("1.00"),
                            currency="EUR",
                            occurred_at=now,
                            player_id=first.pk,
                        )
                    ]
                )
                first_inserted.set()
                time.sleep(0.5)  # the other transaction now waits on the one-open-pool index
        finally:
            connection.close()

    holder = threading.Thread(target=open_and_hold)
    holder.start()
    assert first_inserted.wait(10)
    late = StakeMessage(
        stake_id="race-2",
        player_external_id="b",
        game_id="race-game",
        amount=Decimal("2.00"),
        currency="EUR",
        occurred_at=now,
        player_id=second.pk,
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # Django's error: the consumer's retry catches it
        pools_enter(stakes=[late])
    holder.join(10)

    with transaction.atomic():  # the retry, as the consumer does after its backoff
        pools_enter(stakes=[late])
    pool = Lottery.objects.get(game_id="race-game")
    assert (pool.state, pool.pot, pool.ballots.count()) == ("open", Decimal("3.00"), 2)


def test_a_new_bad_message_at_a_reused_offset_is_dead_lettered_and_a_redelivery_is_not(kafka_broker):
    # given a malformed message at offset 40, dead-lettered
    first = Record(settings.STAKES_TOPIC, 0, 40, b"g", b"{not json", [("messageType", b"player.stakeCreated")])
    handle_batch([first])

    # when the topic is recreated and a different malformed message lands at the same offset,
    # and the first incarnation's message is also redelivered
    second = Record(settings.STAKES_TOPIC, 0, 40, b"g", b'{"stakeId": 1}', [("messageType", b"player.stakeCreated")])
    handle_batch([second, first])

    # then both are dead letters, the redelivery is a duplicate, and the counters balance
    letters = DeadLetter.objects.filter(offset=40).order_by("id")
    assert [bytes(letter.value) for letter in letters] == [b"{not json", b'{"stakeId": 1}']
    totals = counters_total(consumer="stakes")
    assert (totals["received"], totals["dead_lettered"], totals["duplicate"]) == (3, 2, 1)
