"""HTTPS settings, the content security policy of admin and Swagger UI, and who may read /metrics."""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from tests.api.test_docs import _body

PUBLIC = "203.0.113.5"
PROXY = "10.0.0.5"


# --- HTTPS ------------------------------------------------------------------


def _settings_under(env: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    """Load the real settings module in a fresh process under the given environment."""
    code = "import django; from django.conf import settings; django.setup(); " + "; ".join(
        f"print(repr(settings.{name}))" for name in names
    )
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "lottery_site.settings", "DJANGO_SECRET_KEY": "k", **env}
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)


def test_https_settings_come_from_the_environment_and_are_off_by_default():
    names = (
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
    )
    defaults = _settings_under({}, *names)
    production = _settings_under(
        {
            "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
            "DJANGO_SECURE_SSL_REDIRECT": "true",
            "DJANGO_SECURE_HSTS_SECONDS": "31536000",
            "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
            "DJANGO_SECURE_HSTS_PRELOAD": "true",
        },
        *names,
    )

    assert defaults.returncode == 0, defaults.stderr
    assert defaults.stdout.split() == ["None", "False", "0", "False", "False"]
    assert production.returncode == 0, production.stderr
    assert production.stdout.splitlines() == [
        "('HTTP_X_FORWARDED_PROTO', 'https')",
        "True",
        "31536000",
        "True",
        "True",
    ]


def test_a_bad_metrics_network_stops_the_start():
    result = _settings_under({"METRICS_ALLOWED_CIDRS": "10.0.0.0/8,not-a-network"}, "METRICS_ALLOWED_CIDRS")

    assert result.returncode != 0
    assert "METRICS_ALLOWED_CIDRS: 'not-a-network' is not a network" in result.stderr


@pytest.fixture
def https_on(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    return settings


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health/live", "/metrics"])
def test_with_https_on_pages_are_redirected_but_probes_and_scrapes_stay_on_plain_http(client, https_on, path):
    # plain HTTP to the API is sent to HTTPS; HTTPS through the proxy is served, with HSTS
    redirected = client.get("/api/v1/lotteries?kind=daily")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://testserver/api/v1/lotteries?kind=daily"
    secure = client.get("/api/v1/lotteries", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"

    # while a probe or a scrape over plain HTTP is answered as it is
    response = client.get(path)
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response


# --- Content-Security-Policy -------------------------------------------------


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


def _assert_strict(policy: dict[str, list[str]]) -> None:
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


def _inline_code(html: str) -> list[str]:
    """Scripts without src, style blocks, style attributes and event-handler attributes."""
    scripts = [tag for tag in re.findall(r"<script\b[^>]*>", html) if " src=" not in tag]
    return (
        scripts
        + re.findall(r"<style\b", html)
        + re.findall(r"""\sstyle\s*=\s*["']""", html)
        + re.findall(r"""\son[a-z]+\s*=\s*["']""", html)
    )


@pytest.mark.django_db
def test_swagger_ui_runs_under_a_strict_policy_with_nothing_inline(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    _assert_strict(_policy(response))
    html = _body(response).decode()
    assert _inline_code(html) == []
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    assert scripts[-1] == "/api/docs/?script="


@pytest.mark.django_db
def test_swagger_uis_start_up_script_is_served_by_the_docs_view(client):
    response = client.get("/api/docs/?script=")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    script = _body(response).decode()
    assert "SwaggerUIBundle(" in script
    assert '"validatorUrl": null' in script
    assert '"/api/schema/"' in script


@pytest.mark.django_db
def test_admin_pages_carry_the_policy_and_nothing_inline(client):
    from entries.models import Player

    login = client.get("/admin/login/")
    staff = Player.objects.create_superuser(username="boss", email="boss@example.com", password="boss-password")
    client.force_login(staff)
    index = client.get("/admin/")
    change = client.get(f"/admin/entries/player/{staff.pk}/change/")

    for response in (login, index, change):
        assert response.status_code == 200
        _assert_strict(_policy(response))
        assert _inline_code(response.content.decode()) == [], response.request["PATH_INFO"]


# --- /metrics -----------------------------------------------------------------


def _is_metrics(response) -> bool:
    return response.status_code == 200 and b"# TYPE lottery_login_lockouts_total counter" in response.content


def _assert_refused(response) -> None:
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert b"# TYPE" not in response.content
    assert b"lottery_" not in response.content


@pytest.mark.django_db
def test_metrics_are_served_to_local_and_private_networks_and_refused_to_a_public_address(client):
    for address in ["127.0.0.1", "::1", "10.1.2.3", "172.18.0.4", "192.168.1.20", "fd00::7", "::ffff:10.1.2.3"]:
        assert _is_metrics(client.get("/metrics", REMOTE_ADDR=address)), address

    for address in [PUBLIC, "2001:db8::1", "172.32.0.1", "::ffff:203.0.113.5"]:
        _assert_refused(client.get("/metrics", REMOTE_ADDR=address))


@pytest.mark.django_db
def test_metrics_token_lets_a_caller_in_from_anywhere(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    assert _is_metrics(client.get("/metrics", REMOTE_ADDR=PUBLIC, HTTP_AUTHORIZATION="Bearer scrape-secret"))
    _assert_refused(client.get("/metrics", REMOTE_ADDR=PUBLIC, HTTP_AUTHORIZATION="Bearer wrong-secret"))
    _assert_refused(client.get("/metrics", REMOTE_ADDR=PUBLIC, HTTP_AUTHORIZATION="Token scrape-secret"))
    _assert_refused(client.get("/metrics", REMOTE_ADDR=PUBLIC))


@pytest.mark.django_db
def test_with_no_networks_allowed_only_the_token_gets_metrics(client, settings):
    settings.METRICS_ALLOWED_CIDRS = []
    settings.METRICS_TOKEN = "scrape-secret"

    _assert_refused(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))
    assert _is_metrics(client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer scrape-secret"))


@pytest.mark.django_db
def test_with_no_token_set_no_bearer_gets_in(client, settings):
    assert django_settings.METRICS_TOKEN == ""

    _assert_refused(client.get("/metrics", REMOTE_ADDR=PUBLIC, HTTP_AUTHORIZATION="Bearer "))


@pytest.mark.django_db
def test_behind_a_proxy_the_outside_caller_is_refused_and_the_scraper_served(client, settings):
    # given one proxy in front on a private network
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    # then a caller from outside, through the proxy, is refused although the proxy's own address is private
    _assert_refused(client.get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"10.9.9.9, {PUBLIC}"))
    # and Prometheus, scraping the pod directly, is served
    assert _is_metrics(client.get("/metrics", REMOTE_ADDR="10.1.2.3"))


@pytest.mark.django_db
def test_x_forwarded_for_cannot_claim_a_private_address_without_proxies(client):
    _assert_refused(client.get("/metrics", REMOTE_ADDR=PUBLIC, HTTP_X_FORWARDED_FOR="127.0.0.1"))


# --- Business metrics' settings -------------------------------------------------------------


def test_the_metrics_refresh_period_is_at_most_a_day_and_retention_covers_two_periods():
    # The refresh recomputes the hours of its last two periods too: a longer period would stretch its
    # window past the 31 days a reconciliation may span, and past the retention.
    assert _settings_under({"METRICS_REFRESH_SECONDS": "86400"}, "METRICS_REFRESH_SECONDS").stdout.split() == ["86400"]
    too_long = _settings_under({"METRICS_REFRESH_SECONDS": "86401"}, "METRICS_REFRESH_SECONDS")
    assert too_long.returncode != 0 and "METRICS_REFRESH_SECONDS" in too_long.stderr
    short_retention = _settings_under(
        {"METRICS_REFRESH_SECONDS": "86400", "METRICS_RETENTION_DAYS": "2"}, "METRICS_RETENTION_DAYS"
    )
    assert short_retention.returncode != 0
    assert "METRICS_RETENTION_DAYS must cover METRICS_WINDOW_HOURS and two METRICS_REFRESH_SECONDS" in (
        short_retention.stderr
    )
