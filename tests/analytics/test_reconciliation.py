"""Reconciliation: every hour's stake flow against its rows, and the hourly table against its sources."""

from datetime import timedelta

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from analytics.days import hour_ceil
from analytics.models import HourlyMetric
from analytics.selectors import reconciliation
from analytics.services import metrics_recompute, metrics_refresh
from core.tallies import hour_of
from outbox.inbox import inbox_purge
from outbox.models import ConsumerHourCounter, DeadLetter, InboxMessage
from pools.models import Stake
from tests.analytics.flow import short_flow

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def last_day():
    end = hour_ceil(timezone.now())
    return reconciliation(start=end - 24 * HOUR, end=end)


@pytest.fixture
def flowed(kafka_broker, settings, make_player, make_lottery, enter):
    flow = short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    return flow


def test_a_flow_adds_up_and_the_counters_match_their_rows(flowed):
    report = last_day()

    assert report.ok, [check.failures for check in report.failing]
    [counter] = ConsumerHourCounter.objects.all()
    assert (counter.received, counter.applied, counter.duplicate, counter.dead_lettered) == (6, 4, 1, 1)
    # one moment per batch: the counters' hour is that of the rows they count
    assert {hour_of(s.created_at) for s in Stake.objects.all()} | {
        hour_of(m.received_at) for m in InboxMessage.objects.all()
    } | {hour_of(d.created_at) for d in DeadLetter.objects.all()} == {counter.hour}


def test_a_stake_missing_from_its_table_fails_its_hour(flowed):
    Stake.objects.filter(pk=Stake.objects.order_by("pk").values_list("pk", flat=True)[0]).delete()  # nothing does this

    report = last_day()

    [hour] = report.failing
    assert [f.split(":")[0] for f in hour.failures] == ["stakes_balance", "stakes_stored"]
    assert hour.failures[1] == "stakes_stored: applied 4 != stakes stored 3"
    assert report.total_failures == ["stakes_balance: received 6 != stored 3 + duplicate 1 + dead-lettered 1"]


def test_a_lost_inbox_row_or_dead_letter_fails_its_hour(flowed):
    InboxMessage.objects.filter(pk=InboxMessage.objects.order_by("pk").values_list("pk", flat=True)[0]).delete()
    DeadLetter.objects.all().delete()

    [hour] = last_day().failing

    assert [f.split(":")[0] for f in hour.failures] == ["stakes_balance", "inbox", "dead_letters"]
    assert "inbox: applied 4 != inbox rows 3" in hour.failures


def test_hours_past_the_inbox_retention_are_checked_without_it(
    settings, kafka_broker, make_player, make_lottery, enter
):
    short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    settings.INBOX_RETENTION_DAYS = 1
    later = timezone.now() + timedelta(days=1, hours=2)
    assert inbox_purge(now=later) == 4

    end = hour_ceil(later)
    report = reconciliation(start=end - 48 * HOUR, end=end, now=later)

    assert report.ok
    flow_hour = next(check for check in report.hours if check.stakes.received)
    assert (flow_hour.inbox_checked, flow_hour.stakes.inbox_rows) == (False, 0)


def test_an_hour_whose_sources_changed_after_its_recompute_fails_until_the_next(make_player, make_lottery, enter):
    three_hours_ago = timezone.now() - 3 * HOUR
    lottery = make_lottery(opens_at=three_hours_ago - HOUR)
    enter(lottery, make_player(), now=three_hours_ago)
    metrics_refresh()
    assert last_day().ok

    enter(lottery, make_player(), now=three_hours_ago)  # written with its hour's moment, after the recompute
    report = last_day()

    [stale] = report.failing
    assert stale.hour == hour_of(three_hours_ago)
    assert stale.table == "failing"
    assert [(m.column, m.kind, m.table, m.sources) for m in stale.mismatches] == [
        ("ballots_accepted", "drop", 1, 2),
        ("unique_players", "drop", 1, 2),
    ]
    metrics_refresh()
    assert last_day().ok


def test_an_hour_the_table_has_not_recomputed_since_it_ended_is_pending(make_player, make_lottery, enter):
    lottery = make_lottery()
    enter(lottery, make_player())
    metrics_recompute(start=timezone.now() - 2 * HOUR, end=timezone.now())  # ends with the current hour

    report = last_day()

    current = report.hours[-1]
    assert (current.hour, current.table, current.ok) == (hour_of(timezone.now()), "pending", True)
    assert {check.table for check in report.hours[:-1]} == {"ok"}


def test_an_hour_the_refresh_never_recomputed_fails_once_its_recompute_is_due(
    settings, make_player, make_lottery, enter
):
    settings.METRICS_REFRESH_SECONDS = 300
    five_hours_ago = timezone.now() - 5 * HOUR
    enter(make_lottery(opens_at=five_hours_ago - HOUR), make_player(), now=five_hours_ago)

    report = last_day()  # beat's refresh has not run since: the table holds nothing of that hour

    [never] = report.failing
    assert (never.hour, never.table) == (hour_of(five_hours_ago), "failing")
    assert ("ballots_accepted", "drop", 0, 1) in [(m.column, m.kind, m.table, m.sources) for m in never.mismatches]
    # an hour that ended less than two refresh periods ago is not due yet
    just_ended = hour_of(timezone.now()) - HOUR
    at = just_ended + HOUR + timedelta(seconds=599)
    assert next(c for c in reconciliation(start=just_ended, end=just_ended + HOUR, now=at).hours).table == "pending"


def test_money_filed_under_another_currency_fails_its_hour_though_the_hours_sum_agrees(flowed):
    row = HourlyMetric.objects.filter(staked_revenue__gt=0).order_by("hour", "currency").first()
    assert row is not None
    other = next(currency for currency in ("USD", "GBP", "EUR") if currency != row.currency)
    HourlyMetric.objects.filter(pk=row.pk).update(staked_revenue=F("staked_revenue") - 10)
    moved, _ = HourlyMetric.objects.get_or_create(
        hour=row.hour, kind=row.kind, currency=other, defaults={"day": row.day, "computed_at": row.computed_at}
    )
    HourlyMetric.objects.filter(pk=moved.pk).update(staked_revenue=F("staked_revenue") + 10)

    end = hour_ceil(timezone.now())
    [hour] = reconciliation(start=end - 24 * HOUR, end=end, now=end + timedelta(minutes=11)).failing  # once due

    assert {(m.column, m.currency) for m in hour.mismatches} == {
        ("staked_revenue", row.currency),
        ("staked_revenue", other),
    }


def test_the_api_flags_a_failing_hour(flowed, client_for, make_player):
    DeadLetter.objects.all().delete()

    report = client_for(make_player(roles=["operations"])).get(reverse("metrics-reconciliation")).json()

    assert report["status"] == "failing"
    [failing] = report["failing_hours"]
    [hour] = [h for h in report["hours"] if h["hour"] == failing]
    assert hour["status"] == "failing"
    assert "dead_letters: dead-lettered 1 != dead letters 0" in hour["failures"]
