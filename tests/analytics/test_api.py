"""The metrics API: staff with the business metrics' permission only; filters, pages and the one error shape."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import HourlyMetric
from analytics.services import metrics_refresh
from tests.analytics.flow import short_flow

pytestmark = pytest.mark.django_db

ENDPOINTS = ["metrics-hourly", "metrics-daily", "metrics-reconciliation"]


@pytest.fixture
def flowed(kafka_broker, settings, make_player, make_lottery, enter):
    flow = short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    return flow


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize(("role", "allowed"), [("operations", True), ("compliance", True), ("support", False)])
def test_staff_read_the_metrics_with_the_permission_of_their_role(name, role, allowed, client_for, make_player):
    response = client_for(make_player(roles=[role])).get(reverse(name))

    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert response.json()["error"] == {
            "code": "permission_denied",
            "message": response.json()["error"]["message"],
            "details": {"permission": "analytics.view_business_metrics"},
        }


@pytest.mark.parametrize("name", ENDPOINTS)
def test_players_and_anonymous_callers_are_refused_and_told_nothing(name, client_for, make_player):
    player = client_for(make_player()).get(reverse(name))
    anonymous = APIClient().get(reverse(name))

    assert (player.status_code, anonymous.status_code) == (403, 403)
    assert player.json()["error"]["details"] == anonymous.json()["error"]["details"] == {}


def test_the_hourly_rows_of_a_flow_filtered_by_kind_and_currency(flowed, client_for, make_player):
    client = client_for(make_player(roles=["operations"]))

    everything = client.get(reverse("metrics-hourly")).json()
    pools_in_eur = client.get(reverse("metrics-hourly"), {"kind": "pool", "currency": "EUR"}).json()
    no_lottery = client.get(reverse("metrics-hourly"), {"kind": "none"}).json()

    assert everything["count"] == HourlyMetric.objects.count() >= 4
    [eur] = pools_in_eur["results"]
    assert (eur["ballots_accepted"], eur["unique_players"], eur["staked_revenue"], eur["payouts"]) == (
        3,
        3,
        "30.00",
        "27.00",
    )
    assert eur["hour"].endswith(":00:00Z") and set(eur) >= {"day", "computed_at", "ballots_refused", "sms_failed"}
    [ghost] = no_lottery["results"]
    assert (ghost["kind"], ghost["currency"], ghost["refused_lottery_not_found"], ghost["staked_revenue"]) == (
        "",
        "",
        1,
        "0",
    )


def test_the_hourly_rows_by_time_and_by_page(flowed, client_for, make_player):
    client = client_for(make_player(roles=["operations"]))
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)

    before = client.get(reverse("metrics-hourly"), {"to": (hour - timedelta(hours=1)).isoformat()}).json()
    first = client.get(reverse("metrics-hourly"), {"page_size": 2}).json()
    second = client.get(first["next"]).json()

    assert before["count"] == 0
    keys = [(r["hour"], r["kind"], r["currency"]) for r in first["results"] + second["results"]]
    assert len(first["results"]) == 2 and first["count"] == HourlyMetric.objects.count()
    assert len(set(keys)) == len(keys) == min(4, first["count"])


@pytest.mark.parametrize(
    ("name", "query", "field"),
    [
        ("metrics-hourly", {"from": "yesterday"}, "from"),
        ("metrics-hourly", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ("metrics-hourly", {"kind": "lotto"}, "kind"),
        ("metrics-hourly", {"currency": "XXX"}, "currency"),
        ("metrics-hourly", {"from": "0001-01-01T00:00:00+01:00"}, "from"),
        ("metrics-hourly", {"to": ""}, "to"),
        ("metrics-daily", {"kind": ""}, "kind"),
        ("metrics-reconciliation", {"from": ""}, "from"),
        ("metrics-reconciliation", {"to": "1900-01-01T00:30:00+01:00"}, "to"),
        ("metrics-daily", {"from": "2026-1-1"}, "from"),
        ("metrics-daily", {"from": "2026-01-02", "to": "2026-01-01"}, "to"),
        ("metrics-reconciliation", {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to"),
        ("metrics-reconciliation", {"to": "2026-01-01"}, "to"),
    ],
)
def test_bad_filters_are_refused_in_the_one_error_shape(name, query, field, client_for, make_player):
    response = client_for(make_player(roles=["operations"])).get(reverse(name), query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]


def test_the_daily_summary_counts_the_days_players_and_sums_every_kind(flowed, client_for, make_player):
    client = client_for(make_player(roles=["operations"]))
    today = timezone.localdate().isoformat()

    rows = client.get(reverse("metrics-daily"), {"from": today, "to": today}).json()["results"]

    by_dimension = {(row["kind"], row["currency"]): row for row in rows}
    every = by_dimension[("*", "*")]
    assert (every["unique_players"], every["ballots_accepted"], every["staked_revenue"]) == (7, 7, None)
    assert by_dimension[("pool", "GBP")]["refunds"] == "7.50"
    assert by_dimension[("drop", "")]["unique_players"] == 3


def test_the_reconciliation_of_a_flow_adds_up(flowed, client_for, make_player):
    report = client_for(make_player(roles=["compliance"])).get(reverse("metrics-reconciliation")).json()

    assert report["status"] == "ok"
    assert report["failing_hours"] == [] and report["total_failures"] == []
    assert report["totals"] == {
        "received": 6, "applied": 4, "duplicate": 1, "dead_lettered": 1, "stakes_stored": 4, "inbox_rows": 4,
        "dead_letters": 1,
    }  # fmt: skip
    assert len(report["hours"]) == 24 and list(report) == [
        "from", "to", "status", "last_recomputed", "totals", "total_failures", "failing_hours", "hours"
    ]  # fmt: skip


def test_the_metrics_operations_are_in_the_openapi_document_with_their_errors(client):
    document = client.get("/api/schema/", {"format": "json"}).json()

    for path, parameters in {
        "/api/v1/metrics/hourly": {"from", "to", "kind", "currency", "page", "page_size"},
        "/api/v1/metrics/daily": {"from", "to", "kind", "currency", "page", "page_size"},
        "/api/v1/metrics/reconciliation": {"from", "to"},
    }.items():
        operation = document["paths"][path]["get"]
        assert {p["name"] for p in operation["parameters"]} == parameters, path
        assert {"200", "400", "401", "403", "429"} <= set(operation["responses"]), path
        assert "permission_denied" in operation["responses"]["403"]["description"]
    hourly = document["paths"]["/api/v1/metrics/hourly"]["get"]["parameters"]
    assert next(p for p in hourly if p["name"] == "kind")["schema"]["enum"] == ["daily", "drop", "pool", "none"]


@pytest.mark.parametrize(
    ("window", "refresh", "hours"), [(744, 86400, 744), (1, 86400, 49), (1, 300, 1), (24, 3600, 24)]
)
def test_the_default_reconciliation_is_the_refresh_window_within_its_limit(
    settings, client_for, make_player, window, refresh, hours
):
    # The window's reach-back of two refresh periods stays within the 31 days a reconciliation may span,
    # whatever the settings allow (the refresh period is at most a day).
    settings.METRICS_WINDOW_HOURS, settings.METRICS_REFRESH_SECONDS = window, refresh
    answer = client_for(make_player(roles=["compliance"])).get(reverse("metrics-reconciliation"))
    assert answer.status_code == 200, answer.json()
    assert len(answer.json()["hours"]) in (hours, hours + 1)  # one more while the hour before is not due
