"""Money leaves the platform with its currency's minor digits: API, events and admin alike."""

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from core.currencies import format_money
from draws.models import Draw, LotteryAward
from entries.models import Player
from lifecycle.services import lottery_close
from lotteries.models import Lottery
from outbox.models import OutboxEvent
from pools.consumer import Record, handle_batch
from pools.models import Stake
from pools.services import pool_expire


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("18.9000", "EUR", "18.90"),
        ("18.9", "EUR", "18.90"),
        ("0.0000", "EUR", "0.00"),
        ("-0.00", "EUR", "0.00"),
        ("1500.0000", "JPY", "1500"),
        ("1E+3", "JPY", "1000"),  # never scientific notation
        ("1E+6", "EUR", "1000000.00"),
        ("1.2340", "BHD", "1.234"),
        ("12345678901234.5600", "USD", "12345678901234.56"),
    ],
)
def test_an_amount_is_shown_with_exactly_its_currencys_minor_digits(amount, currency, shown):
    assert format_money(Decimal(amount), currency) == shown


@pytest.mark.parametrize(("amount", "currency"), [("18.905", "EUR"), ("1500.5", "JPY"), ("1.2345", "BHD")])
def test_formatting_refuses_to_drop_a_digit_rather_than_round(amount, currency):
    with pytest.raises(ValueError, match="minor digits"):
        format_money(Decimal(amount), currency)


def test_formatting_refuses_an_unknown_currency():
    with pytest.raises(ValueError, match="unknown currency"):
        format_money(Decimal("1.00"), "XXX")


# --- A pool driven through the stake consumer, then drawn -------------------------


def _stakes(game: str, currency: str, amounts: list[str]) -> list[Record]:
    records = []
    for n, amount in enumerate(amounts):
        body = {"stakeId": f"{game}-{n}", "playerId": f"{game}-p{n}", "gameId": game, "amount": amount,
                "currency": currency, "occurredAt": timezone.now().isoformat()}  # fmt: skip
        records.append(Record(settings.STAKES_TOPIC, 0, n, None, json.dumps(body).encode(), []))
    return records


def _drawn_pool(currency: str, amounts: list[str]) -> Lottery:
    game = f"money-{uuid.uuid4().hex[:8]}"
    handle_batch(_stakes(game, currency, amounts))
    pool = Lottery.objects.get(game_id=game)
    assert pool.state == "closed"  # full: its draw is queued after the commit; draw it here
    lottery_close(lottery_id=pool.pk, source="command")
    pool.refresh_from_db()
    assert pool.state == "drawn"
    return pool


@pytest.fixture
def staff_client(client, db):
    staff = Player.objects.create_superuser(username="money-staff", email="s@example.com", password="pw-for-tests")
    client.force_login(staff)
    return client


def _award_event(pool: Lottery) -> Any:
    return json.loads(OutboxEvent.objects.get(key=str(pool.pk), event_type="AwardCreated").value)["data"]


@pytest.mark.django_db
def test_a_drawn_eur_pool_shows_its_win_sum_with_two_decimals_in_the_api_the_event_and_admin(
    kafka_broker, api, staff_client
):
    # given a EUR pool of three 10.00 stakes, drawn: 30.00 x 0.9 = 27.00, stored as 27.0000
    pool = _drawn_pool("EUR", ["10.00", "10.00", "10.00"])
    award = LotteryAward.objects.get(lottery=pool)
    assert (award.win_sum, str(award.win_sum)) == (Decimal("27"), "27.0000")

    # then the public winner lists show "27.00"
    by_lottery = api.get(reverse("lottery-winners", args=[pool.pk])).json()["results"]
    by_day = api.get(reverse("winners"), {"date": pool.day.isoformat()}).json()["results"]
    assert [(w["win_sum"], w["currency"]) for w in by_lottery] == [("27.00", "EUR")]
    assert [(w["win_sum"], w["currency"]) for w in by_day if w["lottery_id"] == pool.pk] == [("27.00", "EUR")]

    # and so does the AwardCreated event
    data = _award_event(pool)
    assert (data["win_sum"], data["currency"]) == ("27.00", "EUR")

    # and admin: the award list and detail, the draw's award inline, the pool's pot, the stakes
    draw = Draw.objects.get(lottery=pool)
    stake = Stake.objects.filter(lottery=pool).first()
    assert stake is not None
    pages = {
        "award list": reverse("admin:draws_lotteryaward_changelist"),
        "award detail": reverse("admin:draws_lotteryaward_change", args=[award.pk]),
        "draw detail": reverse("admin:draws_draw_change", args=[draw.pk]),
        "pool detail": reverse("admin:lotteries_lottery_change", args=[pool.pk]),
        "stake list": reverse("admin:pools_stake_changelist"),
        "stake detail": reverse("admin:pools_stake_change", args=[stake.pk]),
    }
    shown = {}
    for name, url in pages.items():
        response = staff_client.get(url)
        assert response.status_code == 200, name
        shown[name] = response.content.decode()
    for name in ["award list", "award detail", "draw detail"]:
        assert "27.00" in shown[name] and "27.0000" not in shown[name], name
    assert "30.00" in shown["pool detail"] and "30.0000" not in shown["pool detail"]
    for name in ["stake list", "stake detail"]:
        assert "10.00" in shown[name] and "10.0000" not in shown[name], name


@pytest.mark.django_db
def test_a_drawn_jpy_pool_shows_no_decimals(kafka_broker, api, staff_client):
    # given a JPY pool of 500 + 500 + 501 yen: 1501 x 0.9 = 1350.9, paid 1350 (rounded down)
    pool = _drawn_pool("JPY", ["500", "500", "501"])
    award = LotteryAward.objects.get(lottery=pool)
    assert award.win_sum == Decimal("1350")

    winners = api.get(reverse("lottery-winners", args=[pool.pk])).json()["results"]
    assert [(w["win_sum"], w["currency"]) for w in winners] == [("1350", "JPY")]
    assert _award_event(pool)["win_sum"] == "1350"
    award_page = staff_client.get(reverse("admin:draws_lotteryaward_change", args=[award.pk])).content.decode()
    assert "1350" in award_page and "1350.0" not in award_page and "1350,0" not in award_page
    pool_page = staff_client.get(reverse("admin:lotteries_lottery_change", args=[pool.pk])).content.decode()
    assert "1501" in pool_page and "1501.0" not in pool_page


@pytest.mark.django_db
def test_a_cancelled_jpy_pool_lists_its_refunds_without_decimals(kafka_broker):
    # given a JPY pool short of players when its wait ends
    game = f"money-{uuid.uuid4().hex[:8]}"
    handle_batch(_stakes(game, "JPY", ["700", "300"]))
    pool = Lottery.objects.get(game_id=game)

    assert pool_expire(lottery_id=pool.pk, now=pool.closes_at)

    event = json.loads(OutboxEvent.objects.get(key=str(pool.pk), event_type="LotteryCancelled").value)
    assert [(s["amount"], s["currency"]) for s in event["data"]["stakes"]] == [("700", "JPY"), ("300", "JPY")]
