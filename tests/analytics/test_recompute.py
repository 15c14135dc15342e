"""The hourly business metrics are recomputed from their sources: right, idempotent, healing, by the day's zone."""

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone

from analytics.days import day_hours, day_start
from analytics.models import ALL_KINDS, DailyPlayers, HourlyMetric
from analytics.services import metrics_purge, metrics_recompute, metrics_refresh
from analytics.tasks import refresh_business_metrics
from core.models import HourlyTally
from entries.models import Ballot
from outbox.models import ConsumerHourCounter
from tests.analytics.flow import short_flow

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
MONEY = ("staked_revenue", "payouts", "refunds")


def table_totals() -> dict[str, object]:
    """The whole table summed; money per currency."""
    columns = [name for name in short_expected_columns() if name not in MONEY]
    totals: dict[str, object] = HourlyMetric.objects.aggregate(**{c: Sum(c) for c in columns})
    for name in MONEY:
        by_currency = HourlyMetric.objects.exclude(currency="").values("currency").annotate(total=Sum(name))
        totals[name] = {row["currency"]: row["total"] for row in by_currency if row["total"]}
    return totals


def short_expected_columns() -> list[str]:
    return [
        "ballots_accepted", "fraud_rejections", "refused_ballot_limit_reached", "refused_lottery_not_found",
        "ballots_refused", "stakes_received", "stakes_applied", "stakes_duplicate", "stakes_dead_lettered",
        "staked_revenue", "payouts", "prizes_awarded", "draws", "lotteries_cancelled", "refunds", "sms_sent",
        "sms_failed",
    ]  # fmt: skip


def test_every_measure_of_a_short_flow_comes_out_of_its_sources(
    kafka_broker, settings, make_player, make_lottery, enter
):
    flow = short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)

    refresh_business_metrics()

    assert table_totals() == flow.expected
    # by dimension: the drop's row, the pools' rows by currency, the stake flow on (pool, ""), no lottery on ("", "")
    rows = {(row.kind, row.currency): row for row in HourlyMetric.objects.all()}
    assert set(rows) <= {("drop", ""), ("pool", "EUR"), ("pool", "GBP"), ("pool", ""), ("", "")}
    drop = HourlyMetric.objects.filter(kind="drop").aggregate(
        players=Sum("unique_players"), fraud=Sum("fraud_rejections")
    )
    assert drop == {"players": 3, "fraud": 1}
    flow_row = HourlyMetric.objects.filter(kind="pool", currency="").aggregate(
        r=Sum("stakes_received"), a=Sum("stakes_applied"), d=Sum("stakes_duplicate"), x=Sum("stakes_dead_lettered")
    )
    assert flow_row == {"r": 6, "a": 4, "d": 1, "x": 1}
    # the day's players, by dimension and over all: the drop's three, the pools' four
    today = DailyPlayers.objects.filter(day=timezone.localdate())
    assert {(p.kind, p.currency): p.unique_players for p in today} == {
        ("drop", ""): 3, ("pool", "EUR"): 3, ("pool", "GBP"): 1, ("*", "*"): 7
    }  # fmt: skip


def test_a_rerun_changes_nothing_and_a_late_event_heals_its_hour(
    kafka_broker, settings, make_player, make_lottery, enter
):
    short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    first = list(HourlyMetric.objects.order_by("hour", "kind", "currency").values())

    metrics_refresh()
    again = list(HourlyMetric.objects.order_by("hour", "kind", "currency").values())
    assert [{**row, "computed_at": None} for row in again] == [{**row, "computed_at": None} for row in first]

    # a ballot whose hour was recomputed already arrives late (stored with its own moment, two hours ago)
    earlier = timezone.now() - 2 * HOUR
    lottery = make_lottery(opens_at=earlier - HOUR)
    enter(lottery, make_player(), now=earlier)
    metrics_refresh()
    late = HourlyMetric.objects.get(hour=earlier.replace(minute=0, second=0, microsecond=0), kind="drop")
    assert (late.ballots_accepted, late.unique_players) == (1, 1)
    assert HourlyMetric.objects.aggregate(n=Sum("ballots_accepted"))["n"] == 8  # counted once, not added


def test_a_one_hour_window_still_counts_the_last_minutes_of_the_hour_before(settings, make_player, make_lottery, enter):
    settings.METRICS_WINDOW_HOURS = 1
    settings.METRICS_REFRESH_SECONDS = 300
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    lottery = make_lottery(opens_at=hour - HOUR)
    enter(lottery, make_player(), now=hour + timedelta(minutes=50))
    metrics_refresh(now=hour + timedelta(minutes=55))  # the hour's last refresh while it runs
    enter(lottery, make_player(), now=hour + timedelta(minutes=58))

    # Two minutes into the next hour: the window is that hour alone, but the one before is not due yet.
    metrics_refresh(now=hour + HOUR + timedelta(minutes=2))
    row = HourlyMetric.objects.get(hour=hour, kind="drop")
    assert (row.ballots_accepted, row.unique_players) == (2, 2)

    # Once its recompute is due (two refresh periods after its end), the refresh leaves it alone.
    enter(lottery, make_player(), now=hour + timedelta(minutes=59))  # stored late, say by a long transaction
    metrics_refresh(now=hour + HOUR + timedelta(minutes=11))
    assert HourlyMetric.objects.get(hour=hour, kind="drop").ballots_accepted == 2


def test_an_hour_whose_sources_are_gone_loses_its_row(make_player, make_lottery, enter):
    lottery = make_lottery()
    ballot = enter(lottery, make_player())
    metrics_refresh()
    assert HourlyMetric.objects.filter(kind="drop").exists()

    Ballot.objects.filter(pk=ballot.pk).delete()  # nothing in the platform deletes a ballot; the table follows anyway
    metrics_refresh()

    assert not HourlyMetric.objects.exists()


def test_a_days_players_are_counted_over_the_day_not_added_up_from_its_hours(make_player, make_lottery, enter):
    day = timezone.localdate() - timedelta(days=2)
    start, _ = day_hours(day)
    morning, evening = (
        make_lottery(opens_at=start, closes_at=start + timedelta(hours=23)),
        make_lottery(opens_at=start, closes_at=start + timedelta(hours=23)),
    )
    regular, newcomer = make_player(), make_player()
    enter(morning, regular, now=start + timedelta(hours=2))
    enter(evening, regular, now=start + timedelta(hours=20))
    enter(evening, newcomer, now=start + timedelta(hours=20, minutes=5))

    metrics_recompute(start=start, end=start + timedelta(days=1))

    hours = dict(HourlyMetric.objects.filter(kind="drop").values_list("hour", "unique_players"))
    assert hours == {start + timedelta(hours=2): 1, start + timedelta(hours=20): 2}  # 3 when added up
    players = dict(DailyPlayers.objects.filter(day=day).values_list("kind", "unique_players"))
    assert players == {"drop": 2, "*": 2}


def test_a_day_in_a_half_hour_zone_is_its_whole_utc_hours(settings, make_player, make_lottery, enter):
    settings.LOTTERY_TIME_ZONE = "Asia/Kolkata"  # UTC+05:30: local midnight is 18:30 UTC
    start, end = day_hours(date(2026, 3, 10))
    assert (start, end) == (datetime(2026, 3, 9, 19, tzinfo=UTC), datetime(2026, 3, 10, 19, tzinfo=UTC))

    lottery = make_lottery(opens_at=start - timedelta(hours=2), closes_at=end + timedelta(hours=2))
    enter(
        lottery, make_player(), now=start - timedelta(minutes=10)
    )  # 18:50 UTC: 00:20 local, but its hour starts 23:30
    enter(lottery, make_player(), now=start + timedelta(minutes=10))
    metrics_recompute(start=start - HOUR, end=end)

    assert dict(HourlyMetric.objects.values_list("hour", "day")) == {
        start - HOUR: date(2026, 3, 9),
        start: date(2026, 3, 10),
    }


def test_the_summer_time_day_has_23_hours(settings):
    settings.LOTTERY_TIME_ZONE = "Europe/London"
    start, end = day_hours(date(2026, 3, 29))
    assert (end - start, start) == (timedelta(hours=23), datetime(2026, 3, 29, 0, tzinfo=UTC))


def test_backfill_rebuilds_a_range_and_says_what_it_did(make_player, make_lottery, enter):
    day = timezone.localdate() - timedelta(days=10)
    start, _ = day_hours(day)
    lottery = make_lottery(opens_at=start, closes_at=start + timedelta(days=3))
    for n in range(3):
        enter(lottery, make_player(), now=start + timedelta(days=n, hours=5))
    out = io.StringIO()

    call_command("backfill_metrics", "--from", day.isoformat(), "--to", (day + timedelta(days=3)).isoformat(),
                 "--chunk-days", "2", stdout=out)  # fmt: skip

    assert HourlyMetric.objects.aggregate(n=Sum("ballots_accepted"))["n"] == 3
    assert DailyPlayers.objects.filter(kind="*").count() == 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # two pieces and the summary
    assert lines[-1] == "Backfilled 3 hourly rows in " + lines[-1].split(" in ")[1]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("yesterday", "2026-01-01", "--from 'yesterday' is not YYYY-MM-DD"),
        ("2026-01-02", "2026-01-01", "must come after --from"),
        ("2026-01-01T00:00:00", "2026-01-02", "--from '2026-01-01T00:00:00' is not"),
        ("2026-01-01", "2999-01-01", "more than a day ahead"),
        ("0001-01-01", "0001-01-03", "--from '0001-01-01' lies outside 1900-01-01 to 9000-01-01"),
        ("0001-01-01T00:00:00Z", "2026-01-01", "--from '0001-01-01T00:00:00Z' lies outside"),
        ("2026-01-01", "9999-12-31T23:00:00-05:00", "--to '9999-12-31T23:00:00-05:00' lies outside"),
    ],
)
def test_backfill_refuses_a_range_it_cannot_read_with_a_clear_message(start, end, message):
    with pytest.raises(CommandError, match=message):
        call_command("backfill_metrics", "--from", start, "--to", end)
    assert not HourlyMetric.objects.exists()


@pytest.mark.parametrize("chunk_days", ["0", "3661", "99999999999999999999"])
def test_backfill_refuses_a_chunk_it_cannot_make(chunk_days):
    with pytest.raises(CommandError, match="--chunk-days must be from 1 to 3660"):
        call_command("backfill_metrics", "--from", "2026-01-01", "--to", "2026-01-02", "--chunk-days", chunk_days)


def test_the_purge_keeps_retention_and_the_counters_behind_it(settings, make_player, make_lottery, enter):
    settings.METRICS_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    lottery = make_lottery(opens_at=old - HOUR)
    enter(lottery, make_player(), now=old)
    enter(lottery, make_player())
    metrics_recompute(start=old, end=timezone.now())
    HourlyTally.objects.create(hour=old.replace(minute=0, second=0, microsecond=0), measure="ballot_refused", count=1)
    ConsumerHourCounter.objects.create(consumer="stakes", topic="t", partition=0, hour=old.replace(minute=0, second=0,
                                       microsecond=0), received=1, applied=1)  # fmt: skip

    deleted = metrics_purge()

    assert deleted == 5  # the old hour's row, its day's two players rows (drop, and every kind), the tally, the counter
    assert HourlyMetric.objects.filter(hour__lt=timezone.now() - timedelta(days=30)).count() == 0
    assert HourlyMetric.objects.aggregate(n=Sum("ballots_accepted"))["n"] == 1
    assert not HourlyTally.objects.exists() and not ConsumerHourCounter.objects.exists()


def test_the_purge_deletes_whole_days_so_a_kept_days_players_keep_their_hours(
    settings, make_player, make_lottery, enter
):
    settings.METRICS_RETENTION_DAYS = 30
    day = timezone.now().date() - timedelta(days=40)
    first_hour = day_start(day)
    lottery = make_lottery(opens_at=first_hour - HOUR)
    enter(lottery, make_player(), now=first_hour + timedelta(minutes=10))  # in the day's first hour
    enter(lottery, make_player(), now=first_hour + 8 * HOUR)
    metrics_recompute(start=first_hour, end=first_hour + 24 * HOUR)

    metrics_purge(now=first_hour + 5 * HOUR + timedelta(days=30))  # the retention ends five hours into that day

    assert HourlyMetric.objects.filter(day=day).aggregate(n=Sum("ballots_accepted"))["n"] == 2
    assert DailyPlayers.objects.get(day=day, kind=ALL_KINDS).unique_players == 2
    metrics_purge(now=first_hour + 24 * HOUR + timedelta(days=30))  # a day later: the whole day goes
    assert not HourlyMetric.objects.filter(day=day).exists() and not DailyPlayers.objects.filter(day=day).exists()


def test_money_keeps_its_currency_apart(kafka_broker, settings, make_player, make_lottery, enter):
    flow = short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()

    revenue = dict(HourlyMetric.objects.filter(kind="pool").exclude(currency="").values_list("currency").annotate(
        total=Sum("staked_revenue")))  # fmt: skip
    assert revenue == {"EUR": Decimal("30.0000"), "GBP": Decimal("7.5000")}
    assert flow.expected["refunds"] == {"GBP": Decimal("7.50")}
    assert not HourlyMetric.objects.filter(currency="").exclude(staked_revenue=0).exists()
