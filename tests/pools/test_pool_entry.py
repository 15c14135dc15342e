"""A pool is entered only by a stake: every other door refuses, and stores nothing."""

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from entries.models import Ballot, Player
from entries.services import ballot_submit
from lotteries.errors import StakeRequired
from lotteries.models import Lottery
from outbox.models import OutboxEvent
from pools.services import pools_enter
from pools.stake_messages import StakeMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(make_player) -> Lottery:
    """An open pool of three with one staking player in it, entered the only legitimate way."""
    staker = make_player()
    with transaction.atomic():
        pools_enter(
            stakes=[
                StakeMessage(
                    stake_id="door-1",
                    player_external_id="ext-door",
                    game_id="door-game",
                    amount=Decimal("10.00"),
                    currency="EUR",
                    occurred_at=timezone.now(),
                    player_id=staker.pk,
                )
            ]
        )
    return Lottery.objects.get(game_id="door-game")


def stored(pool: Lottery) -> tuple[int, int]:
    """The pool's ballots, and its entry events: what a free entry would have added to."""
    return pool.ballots.count(), OutboxEvent.objects.filter(key=str(pool.pk), event_type="LotteryEntryCreated").count()


def test_the_api_refuses_a_ballot_into_a_pool_and_stores_nothing(pool, make_player, client_for):
    before = stored(pool)
    player = make_player()

    response = client_for(player).post(f"/api/v1/lotteries/{pool.pk}/ballots")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stake_required"
    assert response.json()["error"]["details"] == {"lottery_id": pool.pk}
    assert stored(pool) == before
    assert not Ballot.objects.filter(player=player).exists()


def test_an_idempotent_retry_into_a_pool_is_refused_the_same_way(pool, make_player, client_for):
    client = client_for(make_player())

    first = client.post(f"/api/v1/lotteries/{pool.pk}/ballots", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(f"/api/v1/lotteries/{pool.pk}/ballots", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (409, 409)
    assert again.json()["error"]["code"] == "stake_required"
    assert pool.ballots.count() == 1


def test_the_submit_statement_itself_refuses_a_pool(pool, make_player):
    # The service, not only the view: any caller of ballot_submit meets the rule.
    before = stored(pool)

    with pytest.raises(StakeRequired):
        ballot_submit(lottery_id=pool.pk, player=make_player())

    assert stored(pool) == before


def test_a_pool_stays_stake_only_even_for_a_player_who_staked(pool):
    staker = Player.objects.get(stakes__stake_id="door-1")

    with pytest.raises(StakeRequired):
        ballot_submit(lottery_id=pool.pk, player=staker)

    assert pool.ballots.filter(player=staker).count() == 1  # the stake's ballot only


def test_admin_offers_no_way_to_add_a_ballot(pool, client):
    superuser = Player.objects.create_superuser(username="root", password="root-password")
    client.force_login(superuser)
    before = stored(pool)

    page = client.get(reverse("admin:entries_ballot_add"))
    posted = client.post(reverse("admin:entries_ballot_add"), {"lottery": pool.pk, "player": superuser.pk})

    assert (page.status_code, posted.status_code) == (403, 403)
    assert stored(pool) == before


def test_the_demo_seed_leaves_an_open_pool_alone(pool):
    before = stored(pool)

    call_command("seed_demo", stdout=io.StringIO())

    assert stored(pool) == before
    assert Ballot.objects.filter(lottery__kind=Lottery.Kind.DAILY).exists()  # it did seed what it seeds
