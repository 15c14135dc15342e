"""Repeated wrong passwords lock one (username, client address) pair out, at admin's login and the token endpoint.

axes runs as configured: its real backend and middleware, failures counted in PostgreSQL.
"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from entries.models import Player

LOGIN = reverse("admin:login")
TOKEN = reverse("auth-token")
ATTACKER = "203.0.113.66"
ELSEWHERE = "198.51.100.7"


def lockouts(door: str) -> float:
    return REGISTRY.get_sample_value("lottery_login_lockouts_total", {"door": door}) or 0.0


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def staff(db) -> Player:
    return Player.objects.create_superuser(username="boss", email="boss@example.com", password="boss-password")


def admin_login(client, password: str, address: str = ATTACKER, **extra):
    data = {"username": "boss", "password": password, "next": "/admin/"}
    return client.post(LOGIN, data, REMOTE_ADDR=address, **extra)


def token_request(username: str, password: str, address: str = ATTACKER, **extra):
    return APIClient().post(
        TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address, **extra
    )


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["code"] == "login_locked_out"
    assert body["error"]["details"] == {
        "retry_after_seconds": settings.LOGIN_COOLOFF_MINUTES * 60,
        "failure_limit": settings.LOGIN_FAILURE_LIMIT,
    }
    assert response["Retry-After"] == str(settings.LOGIN_COOLOFF_MINUTES * 60)
    assert "token" not in body


def test_defaults_are_five_failures_and_fifteen_minutes():
    assert settings.LOGIN_FAILURE_LIMIT == 5
    assert settings.LOGIN_COOLOFF_MINUTES == 15


# --- admin ------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_passwords_at_admin_login_lock_the_username_out_from_that_address(client, staff):
    before = lockouts("admin")

    # given four wrong passwords from one address, each answered by the login form again
    for n in range(settings.LOGIN_FAILURE_LIMIT - 1):
        response = admin_login(client, f"guess-{n}")
        assert response.status_code == 200
        assert not logged_in(client)

    # when the fifth is wrong too, then that pair is locked out
    fifth = admin_login(client, "guess-last")
    assert fifth.status_code == 429
    assert "Too many failed logins" in fifth.content.decode()

    # and the right password is refused from there, with no session
    right = admin_login(client, "boss-password")
    assert right.status_code == 429
    assert right["Retry-After"] == str(settings.LOGIN_COOLOFF_MINUTES * 60)
    assert not logged_in(client)
    assert client.get("/admin/", REMOTE_ADDR=ATTACKER).status_code == 302  # to the login page

    # and one lock-out was counted, not one per refused attempt
    assert lockouts("admin") == before + 1
    assert AccessAttempt.objects.get(username="boss", ip_address=ATTACKER).failures_since_start >= 5


@pytest.mark.django_db
def test_a_locked_out_username_still_logs_in_to_admin_from_another_address(client, staff):
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        admin_login(client, f"guess-{n}")
    assert admin_login(client, "boss-password").status_code == 429

    response = admin_login(client, "boss-password", address=ELSEWHERE)

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert logged_in(client)


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client, staff):
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        admin_login(client, f"guess-{n}")
    assert admin_login(client, "boss-password").status_code == 429

    # when the last attempt is older than the cool-off
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES + 1))

    response = admin_login(client, "boss-password")

    assert response.status_code == 302
    assert logged_in(client)


# --- the API token endpoint ----------------------------------------------


@pytest.mark.django_db
def test_a_locked_out_token_request_gets_the_json_error_and_no_token(make_player):
    player = make_player()
    before = lockouts("api")

    statuses = [
        token_request(player.username, f"guess-{n}").status_code for n in range(settings.LOGIN_FAILURE_LIMIT - 1)
    ]
    assert statuses == [400] * (settings.LOGIN_FAILURE_LIMIT - 1)

    assert_locked_out(token_request(player.username, "guess-last"))
    assert_locked_out(token_request(player.username, "password-for-tests"))
    assert not Token.objects.filter(user=player).exists()
    assert lockouts("api") == before + 1


@pytest.mark.django_db
def test_the_same_player_gets_a_token_from_another_address(make_player):
    player = make_player()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        token_request(player.username, f"guess-{n}")

    response = token_request(player.username, "password-for-tests", address=ELSEWHERE)

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=player).key}


@pytest.mark.django_db
def test_another_username_from_the_locked_out_address_is_not_locked(make_player):
    victim, other = make_player(), make_player()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        token_request(victim.username, f"guess-{n}")

    response = token_request(other.username, "password-for-tests")

    assert response.status_code == 200
    assert Token.objects.filter(user=other).exists()


@pytest.mark.django_db
def test_admin_and_api_failures_count_together_for_one_pair(client, staff):
    # a password guessed at both doors is one series of failures
    for n in range(settings.LOGIN_FAILURE_LIMIT - 1):
        admin_login(client, f"guess-{n}")

    assert_locked_out(token_request("boss", "guess-api"))
    assert_locked_out(token_request("boss", "boss-password"))
    assert not Token.objects.filter(user=staff).exists()


@pytest.mark.django_db
def test_x_forwarded_for_does_not_escape_the_lockout_without_proxies(make_player):
    # given no proxy in front (API_NUM_PROXIES=0) and a locked-out pair
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0
    player = make_player()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        token_request(player.username, f"guess-{n}")

    # when the client claims another address in X-Forwarded-For, it is still the peer's address that counts
    response = token_request(player.username, "password-for-tests", HTTP_X_FORWARDED_FOR=ELSEWHERE)

    assert_locked_out(response)
    assert not Token.objects.filter(user=player).exists()


@pytest.mark.django_db
def test_behind_a_proxy_the_address_is_x_forwarded_fors_right_one(settings, make_player):
    # given one proxy in front: it appends the address it saw to what the client sent
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    player = make_player()
    proxy = "10.0.0.5"
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        token_request(player.username, f"guess-{n}", address=proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, {ATTACKER}")

    # then the attacker is locked out whatever it puts on the left
    locked = token_request(
        player.username, "password-for-tests", address=proxy, HTTP_X_FORWARDED_FOR=f"{ELSEWHERE}, {ATTACKER}"
    )
    assert_locked_out(locked)
    assert AccessAttempt.objects.get().ip_address == ATTACKER

    # and the player, arriving through the same proxy from elsewhere, gets the token
    ok = token_request(player.username, "password-for-tests", address=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert ok.status_code == 200
    assert Token.objects.filter(user=player).exists()


@pytest.mark.django_db
def test_an_overlong_username_is_a_validation_error_not_a_500(make_player):
    response = token_request("x" * 5000, "whatever")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "username" in response.json()["error"]["details"]["fields"]
    assert not AccessAttempt.objects.exists()
