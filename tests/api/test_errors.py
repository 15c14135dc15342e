"""Every API error has one shape, the right status and a stable code; bad input never gives a 500."""

import json
from importlib import import_module
from typing import Any

import pytest
from django.core.exceptions import DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils.module_loading import import_string
from rest_framework.throttling import SimpleRateThrottle

from entries.models import Ballot
from lotteries.models import Lottery, LotteryTransition


def assert_error(response, status: int, code: str) -> Any:
    """The response is ``{"error": {"code", "message", "details"}}`` with this status and code."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


@pytest.mark.django_db
def test_unknown_lottery_is_404_lottery_not_found(api):
    response = api.get(reverse("lottery-detail", args=[987654]))

    error = assert_error(response, 404, "lottery_not_found")
    assert error["details"] == {"lottery_id": 987654}


@pytest.mark.django_db
def test_unknown_draw_is_404_draw_not_found(api):
    assert_error(api.get(reverse("draw-detail", args=[987654])), 404, "draw_not_found")
    assert_error(api.get(reverse("draw-verification", args=[987654])), 404, "draw_not_found")


@pytest.mark.django_db
def test_ballot_into_unknown_lottery_is_404_lottery_not_found(client_for, make_player):
    # given a player
    player = make_player()

    # when they enter a lottery that does not exist
    response = client_for(player).post(reverse("ballot-submit", args=[987654]))

    # then nothing is stored
    assert_error(response, 404, "lottery_not_found")
    assert Ballot.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/lotteries/not-a-number", "/api/nope/"])
def test_unknown_url_under_api_is_a_json_404(api, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.django_db
def test_unknown_url_outside_api_is_not_json(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("date", ["2024-13-01", "yesterday", "2024-02-30", "01/02/2024", "20240101", ""])
def test_winners_with_a_bad_date_is_400_validation_error(api, date):
    response = api.get(reverse("winners"), {"date": date})

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["date"]


@pytest.mark.django_db
def test_winners_without_a_date_is_400_validation_error(api):
    response = api.get(reverse("winners"))

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["date"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("param", "value"), [("date", "not-a-date"), ("kind", "lotto"), ("state", "sleeping"), ("date_from", "2024-99-99")]
)
def test_lottery_list_with_a_bad_filter_is_400_validation_error(api, param, value):
    error = assert_error(api.get(reverse("lottery-list"), {param: value}), 400, "validation_error")

    assert list(error["details"]["fields"]) == [param]


@pytest.mark.django_db
def test_lottery_list_page_out_of_range_is_404_not_found(api, make_lottery):
    make_lottery()

    assert_error(api.get(reverse("lottery-list"), {"page": 5}), 404, "not_found")


@pytest.mark.django_db
def test_malformed_json_body_on_close_is_400_and_nothing_changes(api, make_lottery):
    # given a lottery and a caller with the internal token
    lottery = make_lottery()

    # when the body is not JSON
    response = api.post(
        reverse("lottery-close", args=[lottery.pk]),
        data='{"force": tru',
        content_type="application/json",
        HTTP_X_INTERNAL_TOKEN="test-internal-token",
    )

    # then
    assert_error(response, 400, "malformed_request")
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    assert LotteryTransition.objects.filter(lottery=lottery).count() == 1


@pytest.mark.django_db
def test_close_with_a_non_boolean_force_is_400_validation_error(api, make_lottery):
    lottery = make_lottery()

    response = api.post(
        reverse("lottery-close", args=[lottery.pk]),
        data={"force": "perhaps"},
        format="json",
        HTTP_X_INTERNAL_TOKEN="test-internal-token",
    )

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["force"]
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN


@pytest.mark.django_db
def test_close_with_a_non_json_content_type_is_415(api, make_lottery):
    lottery = make_lottery()

    response = api.post(
        reverse("lottery-close", args=[lottery.pk]),
        data="force=true",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_INTERNAL_TOKEN="test-internal-token",
    )

    assert_error(response, 415, "unsupported_media_type")
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["k" * 300, "has space", "tab\tinside", "caf\u00e9"])
def test_invalid_idempotency_key_is_400_and_no_ballot_is_stored(client_for, make_player, make_lottery, key):
    # given a player and an open lottery
    player = make_player()
    lottery = make_lottery()

    # when the Idempotency-Key header is not a valid key
    response = client_for(player).post(reverse("ballot-submit", args=[lottery.pk]), HTTP_IDEMPOTENCY_KEY=key)

    # then
    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]["fields"]) == ["idempotency_key"]
    assert Ballot.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_ballot_is_401_not_authenticated(api, make_lottery):
    lottery = make_lottery()

    response = api.post(reverse("ballot-submit", args=[lottery.pk]))

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert Ballot.objects.count() == 0


@pytest.mark.django_db
def test_wrong_token_is_401_authentication_failed(api, make_lottery):
    lottery = make_lottery()
    api.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    response = api.post(reverse("ballot-submit", args=[lottery.pk]))

    assert_error(response, 401, "authentication_failed")
    assert Ballot.objects.count() == 0


@pytest.mark.django_db
def test_malformed_authorization_header_is_401(api):
    api.credentials(HTTP_AUTHORIZATION="Token two parts")

    assert_error(api.get(reverse("my-ballots")), 401, "authentication_failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("delete", "lottery-list", []),
        ("put", "lottery-detail", [1]),
        ("post", "winners", []),
        ("patch", "draw-detail", [1]),
    ],
)
def test_unsupported_method_is_405(api, method, name, args):
    response = getattr(api, method)(reverse(name, args=args))

    assert_error(response, 405, "method_not_allowed")


@pytest.mark.django_db
def test_get_on_ballots_of_a_lottery_is_405(client_for, make_player, make_lottery):
    lottery = make_lottery()

    response = client_for(make_player()).get(reverse("ballot-submit", args=[lottery.pk]))

    assert_error(response, 405, "method_not_allowed")


@pytest.mark.django_db
def test_ballot_submission_is_throttled_with_429(monkeypatch, client_for, make_player, make_lottery):
    # given a ballot rate of one a minute (DRF reads rates from this class attribute, not from settings)
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "100000/min", "anon": "100000/min", "ballots": "1/min"}
    )
    player = make_player()
    client = client_for(player)
    first_lottery, second_lottery = make_lottery(), make_lottery()

    # when the player submits two ballots within the minute
    first = client.post(reverse("ballot-submit", args=[first_lottery.pk]))
    second = client.post(reverse("ballot-submit", args=[second_lottery.pk]))

    # then the second is refused before anything is stored
    assert first.status_code == 201
    error = assert_error(second, 429, "throttled")
    assert 0 < error["details"]["retry_after_seconds"] <= 60
    assert int(second["Retry-After"]) > 0
    assert list(Ballot.objects.values_list("lottery_id", flat=True)) == [first_lottery.pk]


@pytest.mark.django_db
def test_ballot_throttle_counts_each_player_separately(monkeypatch, client_for, make_player, make_lottery):
    # given a ballot rate of one a minute
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "100000/min", "anon": "100000/min", "ballots": "1/min"}
    )
    lottery = make_lottery()

    # when two players submit one ballot each
    responses = [client_for(make_player()).post(reverse("ballot-submit", args=[lottery.pk])) for _ in range(2)]

    # then neither is throttled
    assert [response.status_code for response in responses] == [201, 201]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/lotteries?page=abc",
        "/api/v1/lotteries?page_size=abc",
        "/api/v1/lotteries?page_size=-3",
        "/api/v1/lotteries?page=0",
        "/api/v1/lotteries?date=2024-01-01T00:00",
        "/api/v1/lotteries?date_to=%00",
        "/api/v1/lotteries/99999999999999999999",
        "/api/v1/lotteries/99999999999999999999/winners",
        "/api/v1/draws/99999999999999999999",
        "/api/v1/draws/99999999999999999999/verification",
        "/api/v1/winners?date=9999-12-31",
        "/api/v1/winners?date=0001-01-01",
        "/api/v1/winners?date=%00",
        "/api/v1/ballots?status=bogus",
        "/api/v1/ballots?lottery=abc",
        "/api/v1/ballots?lottery=99999999999999999999",
        "/api/v1/lotteries?page_size=99999999999999999999",
        "/api/v1/lotteries?date=99999-01-01",
    ],
)
def test_bad_input_on_read_endpoints_never_gives_500(api, make_player, client_for, path):
    client = client_for(make_player()) if path.startswith("/api/v1/ballots") else api

    response = client.get(path)

    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/lotteries/99999999999999999999/close", {}),
        ("/api/v1/lotteries/{id}/close", []),
        ("/api/v1/lotteries/{id}/close", "null"),
        ("/api/v1/lotteries/{id}/close", {"force": None}),
        ("/api/v1/lotteries/{id}/close", {"force": {"nested": True}}),
    ],
)
def test_bad_input_on_close_never_gives_500(api, make_lottery, path, body):
    lottery = make_lottery()

    response = api.post(
        path.format(id=lottery.pk), data=body, format="json", HTTP_X_INTERNAL_TOKEN="test-internal-token"
    )

    assert 400 <= response.status_code < 500, response.content
    assert set(response.json()["error"]) == {"code", "message", "details"}
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN


@pytest.mark.django_db
def test_ballot_into_a_huge_lottery_id_never_gives_500(client_for, make_player):
    response = client_for(make_player()).post("/api/v1/lotteries/99999999999999999999/ballots")

    assert_error(response, 404, "not_found")
    assert Ballot.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["t\u00e9st-internal-token", "x" * 5000])
def test_odd_internal_tokens_are_refused_without_500(api, make_lottery, token):
    lottery = make_lottery()

    response = api.post(reverse("lottery-close", args=[lottery.pk]), format="json", HTTP_X_INTERNAL_TOKEN=token)

    assert_error(response, 403, "permission_denied")
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN


@pytest.mark.django_db
def test_password_guessing_on_the_token_endpoint_is_throttled(api, make_player, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "login": "3/min"})
    player = make_player()
    guesses = [{"username": player.username, "password": f"guess-{n}"} for n in range(4)]

    statuses = [api.post(reverse("auth-token"), data=g, format="json").status_code for g in guesses]

    assert statuses == [400, 400, 400, 429]


UNKNOWN_API_PATHS = [
    "/api",
    "/api/nope",
    "/api/v1/nope",
    "/api/v2/x",
    "/api/v1/lotteries/abc",
    "/api/v1/lotteries/99999999999999999999999",
    "/api/v1/lotteries/1/nope",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
def test_unknown_url_under_api_is_a_json_404_in_debug_mode_too(api, settings, path):
    # given debug mode, where Django answers a 404 with its technical HTML page
    settings.DEBUG = True

    # then the API still answers in its shape, for a read and for a write
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.post(path, data={}, format="json"), 404, "not_found")


@pytest.mark.django_db
def test_the_api_root_without_a_slash_is_a_json_404(api):
    assert_error(api.get("/api"), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_disallowed_host_under_api_is_a_json_400_logged_by_django_security(
    api, make_lottery, settings, caplog, debug
):
    # given a lottery and a caller with the internal token
    settings.DEBUG = debug
    lottery = make_lottery()

    # when the request names a host the service does not serve
    response = api.post(
        reverse("lottery-close", args=[lottery.pk]),
        data={"force": True},
        format="json",
        HTTP_HOST="evil.example",
        HTTP_X_INTERNAL_TOKEN=settings.INTERNAL_TOKENS["close"][0],
    )

    # then it is refused in the shape, logged where Django logs it, and nothing changes
    assert_error(response, 400, "invalid_host")
    assert [r.levelname for r in caplog.records if r.name == "django.security.DisallowedHost"] == ["ERROR"]
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    # outside the API, Django's own page (never a 500)
    admin = api.get("/admin/login/", HTTP_HOST="evil.example")
    assert admin.status_code == 400
    assert not admin["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_a_session_write_without_its_csrf_token_is_a_json_403_csrf_failed(make_player, make_lottery):
    # given a staff member signed in with a session (as in Swagger UI), and an open lottery
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_player(roles=["operations"]))
    lottery = make_lottery()
    path = reverse("lottery-close", args=[lottery.pk])

    # when they force a close without the CSRF token
    refused = client.post(path, data='{"force": true}', content_type="application/json")

    # then it is refused in the shape and nothing changes
    assert_error(refused, 403, "csrf_failed")
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    # and with the token, the same session closes it
    client.get("/admin/")  # a page with a form sets the CSRF cookie
    accepted = client.post(
        path,
        data='{"force": true}',
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert accepted.status_code == 200, accepted.content


def test_djangos_csrf_failure_view_answers_in_the_shape_under_api_only(rf, settings):
    view = import_string(settings.CSRF_FAILURE_VIEW)

    api_response = view(rf.post("/api/v1/lotteries/1/close"), reason="CSRF cookie not set.")
    admin_response = view(rf.post("/admin/login/"), reason="CSRF cookie not set.")

    assert_error(api_response, 403, "csrf_failed")
    assert admin_response.status_code == 403
    assert not admin_response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("status", "exception", "code"),
    [
        (400, SuspiciousOperation("odd"), "bad_request"),
        (400, DisallowedHost("evil.example"), "invalid_host"),
        (400, RequestDataTooBig("big"), "request_too_large"),
        (403, DjangoPermissionDenied(), "permission_denied"),
    ],
)
def test_djangos_error_handlers_answer_in_the_shape_under_api_only(rf, settings, status, exception, code):
    handler = import_string(getattr(import_module(settings.ROOT_URLCONF), f"handler{status}"))

    api_response = handler(rf.get("/api/v1/lotteries"), exception)
    admin_response = handler(rf.get("/admin/"), exception)

    assert_error(api_response, 413 if code == "request_too_large" else status, code)
    assert admin_response.status_code == status
    assert not admin_response["Content-Type"].startswith("application/json")
