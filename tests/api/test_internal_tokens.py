"""Internal tokens: one per purpose, each with a current and a next value for rotation."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from lottery_site import settings as site_settings
from tests.kafka import read_messages

CLOSE, CLOSE_NEXT = "close-token-current-0000", "close-token-next-00000000"
STAKES = "stakes-token-current-000"
DROPS = "drops-token-current-0000"
LOADGEN = "loadgen-token-current-00"
TOKENS = {"close": (CLOSE, CLOSE_NEXT), "stakes": (STAKES,), "drops": (DROPS,), "loadgen": (LOADGEN,)}


@pytest.fixture
def due_lottery(make_lottery):
    return make_lottery(closes_at=timezone.now() - timedelta(minutes=1))


def close(api, lottery, token):
    return api.post(reverse("lottery-close", args=[lottery.pk]), format="json", HTTP_X_INTERNAL_TOKEN=token)


STAKE = {"stakeId": "tok-1", "playerId": "p", "gameId": "tok-game", "amount": "1.00", "currency": "EUR"}


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS=TOKENS)
def test_the_stakes_token_does_not_close_a_lottery(api, due_lottery):
    response = close(api, due_lottery, STAKES)

    assert response.status_code == 403
    due_lottery.refresh_from_db()
    assert due_lottery.state == "open"


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS=TOKENS)
def test_the_close_token_does_not_produce_stakes(api, kafka_broker):
    refused = api.post(reverse("stake-produce"), STAKE, format="json", HTTP_X_INTERNAL_TOKEN=CLOSE)
    # A stake of the same game, sent after it with the right token, lands behind it on the same partition.
    marker = api.post(reverse("stake-produce"), {**STAKE, "stakeId": "tok-2"}, format="json",
                      HTTP_X_INTERNAL_TOKEN=STAKES)  # fmt: skip

    assert (refused.status_code, marker.status_code) == (403, 202)
    produced = read_messages(kafka_broker.bootstrap, [settings.STAKES_TOPIC], keys={"tok-game"}, expect=1)
    assert [message.value["stakeId"] for message in produced] == ["tok-2"]


@pytest.mark.django_db
@pytest.mark.parametrize("token", [CLOSE, CLOSE_NEXT])
@override_settings(INTERNAL_TOKENS=TOKENS)
def test_during_a_rotation_both_the_current_and_the_next_close_token_work(api, make_lottery, token):
    lottery = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))

    response = close(api, lottery, token)

    assert response.status_code == 200
    assert response.json()["lottery"]["state"] == "cancelled"  # no ballots: closed and cancelled


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS={"close": (CLOSE_NEXT,), "stakes": (STAKES,), "drops": (DROPS,)})
def test_after_a_rotation_the_old_token_is_refused(api, due_lottery):
    assert close(api, due_lottery, CLOSE).status_code == 403
    due_lottery.refresh_from_db()
    assert due_lottery.state == "open"


@pytest.mark.parametrize(
    ("environment", "complaint"),
    [
        ({"INTERNAL_CLOSE_TOKEN": "short"}, "at least 16 characters"),
        ({"INTERNAL_CLOSE_TOKEN": CLOSE, "INTERNAL_STAKES_TOKEN": CLOSE}, "a token of its own"),
        ({"INTERNAL_CLOSE_TOKEN": CLOSE, "INTERNAL_STAKES_TOKEN_NEXT": CLOSE}, "a token of its own"),
    ],
)
def test_weak_or_shared_tokens_are_refused_at_start(monkeypatch, environment, complaint):
    for purpose in site_settings.INTERNAL_TOKEN_PURPOSES:
        monkeypatch.delenv(f"INTERNAL_{purpose.upper()}_TOKEN", raising=False)
        monkeypatch.delenv(f"INTERNAL_{purpose.upper()}_TOKEN_NEXT", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=complaint):
        site_settings._internal_tokens()


def test_tokens_are_read_per_purpose_with_their_next_value(monkeypatch):
    monkeypatch.setenv("INTERNAL_CLOSE_TOKEN", CLOSE)
    monkeypatch.setenv("INTERNAL_CLOSE_TOKEN_NEXT", CLOSE_NEXT)
    monkeypatch.setenv("INTERNAL_STAKES_TOKEN", STAKES)
    monkeypatch.delenv("INTERNAL_STAKES_TOKEN_NEXT", raising=False)
    monkeypatch.setenv("INTERNAL_DROPS_TOKEN", DROPS)
    monkeypatch.delenv("INTERNAL_DROPS_TOKEN_NEXT", raising=False)
    monkeypatch.setenv("INTERNAL_LOADGEN_TOKEN", LOADGEN)
    monkeypatch.delenv("INTERNAL_LOADGEN_TOKEN_NEXT", raising=False)

    assert site_settings._internal_tokens() == TOKENS


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS=TOKENS)
def test_the_token_vouches_for_a_signed_in_staff_member_without_the_permission(client_for, make_player, due_lottery):
    # A service signed in as a staff account of another role still gets in with the close token; the
    # transition is recorded as the platform's, not as the staff member's.
    response = client_for(make_player(roles=["support"])).post(
        reverse("lottery-close", args=[due_lottery.pk]), format="json", HTTP_X_INTERNAL_TOKEN=CLOSE
    )

    assert response.status_code == 200
    assert list(due_lottery.transitions.values_list("to_state", "actor")) == [
        ("open", None), ("closed", None), ("cancelled", None)
    ]  # fmt: skip
