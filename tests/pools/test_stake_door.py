"""POST /api/v1/stakes: the test door that produces a stake to Kafka as the game service would."""

import pytest
from django.conf import settings
from django.urls import reverse

from tests.kafka import read_messages

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("kafka_broker")]

TOKEN = "test-stakes-token-0000"  # tests.settings sets INTERNAL_STAKES_TOKEN to this


def post(api, body, **headers):
    return api.post(reverse("stake-produce"), data=body, format="json", **headers)


def test_a_valid_stake_is_produced_to_the_stakes_topic(api, kafka_broker):
    body = {"stakeId": "door-1", "playerId": "42", "gameId": "door-game", "amount": "7.50", "currency": "EUR"}

    response = post(api, body, HTTP_X_INTERNAL_TOKEN=TOKEN)

    assert response.status_code == 202, response.content
    assert response.json()["stakeId"] == "door-1"
    assert response.json()["topic"] == settings.STAKES_TOPIC
    messages = read_messages(kafka_broker.bootstrap, [settings.STAKES_TOPIC], keys={"door-game"}, expect=1)
    [message] = [m for m in messages if m.value.get("stakeId") == "door-1"]
    assert message.headers["messageType"] == "player.stakeCreated"
    assert message.offset == response.json()["offset"]
    assert {k: message.value[k] for k in ("playerId", "gameId", "amount")} == {
        "playerId": "42",
        "gameId": "door-game",
        "amount": "7.50",
    }
    assert message.value["occurredAt"]  # filled in when not given


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": "-1.00"}, "invalid_amount"),
        ({"amount": "1.001"}, "invalid_amount"),
        ({"currency": "XXX"}, "unknown_currency"),
        ({"occurredAt": "9999-12-31T23:59:59-23:59"}, "invalid_field"),  # year 10000 in UTC
    ],
)
def test_an_invalid_stake_is_refused_with_the_consumers_own_reason(api, change, reason):
    body = {"playerId": "42", "gameId": "g", "amount": "1.00", "currency": "EUR", **change}

    response = post(api, body, HTTP_X_INTERNAL_TOKEN=TOKEN)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_stake"
    assert response.json()["error"]["details"] == {"reason": reason}


def test_a_stake_without_staff_or_token_is_refused(api, make_player, client_for):
    body = {"playerId": "42", "gameId": "g", "amount": "1.00", "currency": "EUR"}

    assert post(api, body).status_code == 403
    assert post(client_for(make_player()), body).status_code == 403
    assert post(api, body, HTTP_X_INTERNAL_TOKEN="wrong").status_code == 403
