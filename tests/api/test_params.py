"""Query parameters, headers and bodies are taken only in their documented form: anything else is a 400."""

import pytest
from django.conf import settings
from django.urls import reverse

from lotteries.models import Lottery, LotteryTransition
from tests.api.test_errors import assert_error
from tests.kafka import read_messages

pytestmark = pytest.mark.django_db

CLOSE_TOKEN = {"HTTP_X_INTERNAL_TOKEN": "test-internal-token"}  # tests.settings: INTERNAL_CLOSE_TOKEN
STAKES_TOKEN = {"HTTP_X_INTERNAL_TOKEN": "test-stakes-token-0000"}  # tests.settings: INTERNAL_STAKES_TOKEN


@pytest.mark.parametrize("value", ["", "abc", "0", "-1", "1.0", "+1", " 1", "last"])
def test_a_page_that_is_not_a_positive_integer_is_400(api, make_lottery, value):
    make_lottery()

    error = assert_error(api.get(reverse("lottery-list"), {"page": value}), 400, "validation_error")

    assert list(error["details"]["fields"]) == ["page"]


@pytest.mark.parametrize("value", ["", "true", "0", "501", "2.5"])
def test_a_page_size_that_is_not_an_integer_from_1_to_500_is_400(api, make_lottery, value):
    make_lottery()

    error = assert_error(api.get(reverse("lottery-list"), {"page_size": value}), 400, "validation_error")

    assert list(error["details"]["fields"]) == ["page_size"]
    assert api.get(reverse("lottery-list"), {"page_size": 500}).json()["count"] == 1


@pytest.mark.parametrize("route", ["winners", "lottery-winners", "my-ballots"])
def test_every_list_checks_its_page_parameters(api, client_for, make_player, make_lottery, route):
    lottery = make_lottery()
    client = client_for(make_player())
    url = reverse(route, args=[lottery.pk]) if route == "lottery-winners" else reverse(route)
    params = {"date": "2026-11-22"} if route == "winners" else {}

    response = client.get(url, {**params, "page_size": "true"})

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["page_size"]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("date", ""),
        ("date_from", ""),
        ("date_to", ""),
        ("kind", ""),
        ("state", ""),
        ("date", "01/02/2024"),
        ("date", "2024-1-1"),
    ],
)
def test_a_lottery_filter_given_empty_or_not_as_yyyy_mm_dd_is_400(api, make_lottery, param, value):
    make_lottery()

    error = assert_error(api.get(reverse("lottery-list"), {param: value}), 400, "validation_error")

    assert list(error["details"]["fields"]) == [param]


def test_the_winners_date_must_be_yyyy_mm_dd(api):
    for value in ("2024-1-1", " 2024-01-01"):
        error = assert_error(api.get(reverse("winners"), {"date": value}), 400, "validation_error")
        assert list(error["details"]["fields"]) == ["date"]
    assert api.get(reverse("winners"), {"date": "2024-01-01"}).status_code == 200


@pytest.mark.parametrize(("param", "value"), [("lottery", ""), ("status", "")])
def test_a_ballot_filter_given_empty_is_400(client_for, make_player, param, value):
    error = assert_error(client_for(make_player()).get(reverse("my-ballots"), {param: value}), 400, "validation_error")

    assert list(error["details"]["fields"]) == [param]


def test_my_ballots_in_a_lottery_without_any_is_an_empty_page(client_for, make_player, make_lottery, enter):
    # given a player with a ballot in one lottery
    me = make_player()
    enter(make_lottery(), me)

    # when they ask for their ballots in a lottery they never entered, or that does not exist
    client = client_for(me)
    other = client.get(reverse("my-ballots"), {"lottery": make_lottery().pk})
    unknown = client.get(reverse("my-ballots"), {"lottery": 987654})

    # then both are empty lists, not errors
    assert (other.status_code, other.json()["count"]) == (200, 0)
    assert (unknown.status_code, unknown.json()["count"]) == (200, 0)


@pytest.mark.parametrize("force", [1, "true", "yes", 0])
def test_close_takes_force_only_as_a_json_boolean_and_changes_nothing_otherwise(api, make_lottery, force):
    # given an open lottery whose window has not ended
    lottery = make_lottery()

    # when the internal service sends force as something other than true or false
    response = api.post(
        reverse("lottery-close", args=[lottery.pk]), data={"force": force}, format="json", **CLOSE_TOKEN
    )

    # then it is refused, and the lottery is still open with its one transition
    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["force"]
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    assert LotteryTransition.objects.filter(lottery=lottery).count() == 1


STAKE = {"playerId": "42", "gameId": "strict-door", "amount": "5.00", "currency": "EUR"}


@pytest.mark.usefixtures("kafka_broker")
@pytest.mark.parametrize(
    ("change", "code", "where"),
    [
        ({"currency": "eur"}, "invalid_stake", {"reason": "unknown_currency"}),
        ({"amount": "5e2"}, "invalid_stake", {"reason": "invalid_amount"}),
        ({"amount": "+5"}, "invalid_stake", {"reason": "invalid_amount"}),
        ({"amount": " 5"}, "invalid_stake", {"reason": "invalid_amount"}),
        ({"amount": "5.000"}, "invalid_stake", {"reason": "invalid_amount"}),
        ({"amount": 5}, "validation_error", "amount"),
        ({"playerId": 42}, "validation_error", "playerId"),
        ({"gameId": " padded "}, "validation_error", "gameId"),
        ({"occurredAt": "2026-11-22"}, "validation_error", "occurredAt"),
        ({"occurredAt": "2026-11-22T10:00:00"}, "validation_error", "occurredAt"),
    ],
)
def test_a_stake_not_in_its_documented_form_is_400_and_nothing_is_produced(api, kafka_broker, change, code, where):
    # given a game of its own, so its topic key holds only this test's stakes
    game = f"strict-door-{code}-{sorted(change)}-{sorted(map(str, change.values()))}"

    # when a stake not in its documented form is sent, then a valid one for the same game
    refused = api.post(
        reverse("stake-produce"), data={**STAKE, "gameId": game, **change}, format="json", **STAKES_TOKEN
    )
    valid = api.post(reverse("stake-produce"), data={**STAKE, "gameId": game}, format="json", **STAKES_TOKEN)

    # then the first is refused, saying why, and only the second reached the topic
    error = assert_error(refused, 400, code)
    if code == "validation_error":
        assert list(error["details"]["fields"]) == [where]
    else:
        assert error["details"] == where
    assert valid.status_code == 202, valid.content
    produced = read_messages(kafka_broker.bootstrap, [settings.STAKES_TOPIC], keys={game}, expect=2, timeout=1.5)
    assert [m.value["stakeId"] for m in produced] == [valid.json()["stakeId"]]


def test_the_token_endpoint_ignores_a_stale_authorization_header(api, make_player):
    # given a player whose client still sends an old, revoked token
    player = make_player()
    api.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    # when it asks for the current token with the player's password
    response = api.post(
        reverse("auth-token"), {"username": player.username, "password": "password-for-tests"}, format="json"
    )

    # then it gets it
    assert response.status_code == 200, response.content
    assert response.json()["token"] == player.auth_token.key
