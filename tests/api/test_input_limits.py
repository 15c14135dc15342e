"""Hostile request bodies are refused with 400 malformed_request or 413 before anything is parsed or changed.

Each hostile body carries a valid request (good credentials, ``force``, a
valid stake) beside the hostile part, so a parser that let it through would
create a token, close the lottery or produce a stake.
"""

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse
from kafka import KafkaConsumer, TopicPartition
from rest_framework.authtoken.models import Token

from lotteries.models import Lottery, LotteryTransition
from tests.api.test_errors import assert_error

PASSWORD = "password-for-tests"  # conftest's make_player


@dataclass
class Endpoint:
    """One POST endpoint, a valid body for it, and how to tell that nothing happened."""

    name: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    snapshot: Any

    def post(self, api, data: bytes | str, content_type: str = "application/json", **extra):
        return api.post(self.path, data=data, content_type=content_type, **self.headers, **extra)


def stake_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """The stakes topic's end offsets: they move when anything is produced to it."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(settings.STAKES_TOPIC) or set()
        offsets: dict[TopicPartition, int] = consumer.end_offsets(
            [TopicPartition(settings.STAKES_TOPIC, p) for p in partitions]
        )
        return offsets
    finally:
        consumer.close()


@pytest.fixture(params=["auth-token", "lottery-close", "stake-produce"])
def endpoint(request, make_player, make_lottery) -> Endpoint:
    def internal(purpose: str) -> dict[str, str]:
        return {"HTTP_X_INTERNAL_TOKEN": settings.INTERNAL_TOKENS[purpose][0]}

    if request.param == "auth-token":
        player = make_player()
        return Endpoint(
            "auth-token",
            reverse("auth-token"),
            {"username": player.username, "password": PASSWORD},
            {},
            lambda: Token.objects.count(),
        )
    if request.param == "lottery-close":
        lottery = make_lottery()  # open, not yet due: only force closes it

        def lottery_state():
            lottery.refresh_from_db()
            return lottery.state, LotteryTransition.objects.filter(lottery=lottery).count()

        return Endpoint(
            "lottery-close",
            reverse("lottery-close", args=[lottery.pk]),
            {"force": True},
            internal("close"),
            lottery_state,
        )
    broker = request.getfixturevalue("kafka_broker")
    return Endpoint(
        "stake-produce",
        reverse("stake-produce"),
        {"playerId": "42", "gameId": "limits-game", "amount": "1.00", "currency": "EUR"},
        internal("stakes"),
        lambda: stake_offsets(broker.bootstrap),
    )


def with_extra(body: dict[str, Any], extra: str | bytes) -> bytes:
    """The valid body's members, then ``extra`` as more members of the same object."""
    members = json.dumps(body)[1:-1].encode()
    extra = extra.encode() if isinstance(extra, str) else extra
    return b"{" + members + b", " + extra + b"}"


HOSTILE: dict[str, tuple[str | bytes | None, dict[str, Any]]] = {
    # name: (the extra members, or None for the valid members repeated; the expected details)
    "1000 nested arrays": ('"pad": ' + "[" * 1000 + "]" * 1000, {"limit": "depth", "max": 32}),
    "1000 nested objects": ('"pad": ' + '{"a":' * 1000 + "0" + "}" * 1000, {"limit": "depth", "max": 32}),
    "one level too deep": ('"pad": ' + "[" * 32 + "]" * 32, {"limit": "depth", "max": 32}),
    "1000 items beside the keys": ('"pad": [' + ",".join(["0"] * 1000) + "]", {"limit": "keys", "max": 1000}),
    "invalid UTF-8": (b'"pad": "\xff\xfe\xc3"', {"reason": "encoding", "encoding": "utf-8"}),
    "NaN": ('"pad": NaN', {"reason": "non_finite_number"}),
    "Infinity": ('"pad": Infinity', {"reason": "non_finite_number"}),
    "-Infinity": ('"pad": -Infinity', {"reason": "non_finite_number"}),
    "duplicate keys": (None, {"reason": "duplicate_key"}),
    "1e999999": ('"pad": 1e999999', {"reason": "number_out_of_range"}),
    "a 100,000-digit integer": ('"pad": ' + "9" * 100_000, {"limit": "number_length", "max": 100}),
    "a 101-digit integer": ('"pad": ' + "9" * 101, {"limit": "number_length", "max": 100}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_json_body_is_400_malformed_request_and_changes_nothing(api, endpoint, case):
    # given a valid request with something hostile beside it
    extra, expected_details = HOSTILE[case]
    body = with_extra(endpoint.body, json.dumps(endpoint.body)[1:-1] if extra is None else extra)
    before = endpoint.snapshot()

    # when it is posted
    response = endpoint.post(api, body)

    # then it is refused in the error shape, saying which limit or rule, and nothing happened
    error = assert_error(response, 400, "malformed_request")
    assert expected_details.items() <= error["details"].items()
    assert endpoint.snapshot() == before


@pytest.mark.django_db
def test_a_body_at_every_limit_is_accepted(api, endpoint):
    # given a valid request with a member nested to the depth limit and keys and items up to the limit
    keys = len(endpoint.body) + 2  # the valid members, "pad" and "wide"
    nested = "[" * 31 + "1.5e300" + "]" * 31  # inside the top-level object: 32 levels
    wide = "[" + ",".join(["0"] * (settings.API_JSON_MAX_KEYS - keys - 31)) + "]"
    body = with_extra(endpoint.body, f'"pad": {nested}, "wide": {wide}')
    before = endpoint.snapshot()

    # when it is posted
    response = endpoint.post(api, body)

    # then it is served as the valid request it carries
    assert response.status_code in (200, 202), response.content
    assert endpoint.snapshot() != before


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_413_request_too_large(api, endpoint):
    # given a valid request padded beyond DATA_UPLOAD_MAX_MEMORY_SIZE
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = with_extra(endpoint.body, '"pad": "' + "x" * limit + '"')
    before = endpoint.snapshot()

    # when it is posted
    response = endpoint.post(api, body)

    # then
    error = assert_error(response, 413, "request_too_large")
    assert error["details"] == {"max_bytes": limit}
    assert endpoint.snapshot() == before


@pytest.mark.django_db
def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(api, endpoint):
    # given a request claiming a body far over the limit (the test client sends a short one)
    before = endpoint.snapshot()

    # when it is posted
    response = endpoint.post(api, json.dumps(endpoint.body), CONTENT_LENGTH=str(10**12))

    # then
    error = assert_error(response, 413, "request_too_large")
    assert error["details"] == {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
    assert endpoint.snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_content_length_that_is_not_a_number_is_400(api, endpoint, length):
    before = endpoint.snapshot()

    response = endpoint.post(api, json.dumps(endpoint.body), CONTENT_LENGTH=length)

    error = assert_error(response, 400, "malformed_request")
    assert error["details"] == {"header": "Content-Length"}
    assert endpoint.snapshot() == before


@pytest.mark.django_db
def test_a_chunked_body_the_server_did_not_decode_is_411(api, endpoint):
    # given a server that hands the application chunked framing it did not decode (runserver does)
    before = endpoint.snapshot()

    # when a body comes without its length
    response = api.generic("POST", endpoint.path, HTTP_TRANSFER_ENCODING="chunked", **endpoint.headers)

    # then the client is told to send the length, rather than the body being taken as empty
    error = assert_error(response, 411, "length_required")
    assert error["details"] == {"header": "Content-Length"}
    assert endpoint.snapshot() == before


@pytest.mark.django_db
def test_a_form_with_too_many_fields_on_the_token_endpoint_is_400_in_the_error_shape(api, make_player, caplog):
    # given valid credentials among more form fields than Django accepts
    player = make_player()
    fields = "&".join(f"f{n}=0" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS))
    body = f"username={player.username}&password={PASSWORD}&{fields}"

    # when they are posted as a form
    response = api.post(reverse("auth-token"), data=body, content_type="application/x-www-form-urlencoded")

    # then the shape, not Django's HTML page, and Django's security log still hears of it
    error = assert_error(response, 400, "malformed_request")
    assert error["details"] == {"limit": "fields", "max": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}
    assert Token.objects.count() == 0
    assert any(record.name == "django.security.TooManyFieldsSent" for record in caplog.records)
    # while the same credentials as a small form still get the token
    small = api.post(reverse("auth-token"), data={"username": player.username, "password": PASSWORD})
    assert small.json() == {"token": Token.objects.get(user=player).key}


@pytest.mark.django_db
def test_the_depth_limit_is_a_setting(api, make_lottery, settings):
    settings.API_JSON_MAX_DEPTH = 2
    lottery = make_lottery()

    response = api.post(
        reverse("lottery-close", args=[lottery.pk]),
        data='{"force": true, "pad": [[0]]}',
        content_type="application/json",
        HTTP_X_INTERNAL_TOKEN=settings.INTERNAL_TOKENS["close"][0],
    )

    error = assert_error(response, 400, "malformed_request")
    assert error["details"] == {"limit": "depth", "max": 2}
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
