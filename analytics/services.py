"""Writes of the business metrics: recompute a range of hours from their sources, purge past retention.

``metrics_recompute`` never adds to a row: it sets every column of every row
in the range to what the sources say now (``analytics.measures``), in one
transaction, so a rerun changes nothing and a late event heals its hour.
Within the transaction: the range's rows are zeroed, each measure group is
upserted by one set-based ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``,
rows left empty are deleted, and the distinct players of every
LOTTERY_TIME_ZONE day the range touches are counted again from the source rows
(the whole day, never a sum of hours). Two recomputations never interleave:
each holds a transaction-level advisory lock.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics import measures
from analytics.days import day_of, day_start, hour_ceil, refresh_window
from analytics.models import ALL_KINDS, DailyPlayers, HourlyMetric
from core.db import sql
from core.models import HourlyTally
from core.tallies import hour_of
from outbox.models import ConsumerHourCounter

logger = logging.getLogger(__name__)

# One lock for every recomputation (pg_advisory_xact_lock's key): "bizmetrics" as a number.
_LOCK_KEY = 0x62697A6D65747263
# A busy hour's distinct players are sorted in memory rather than on disk.
_WORK_MEM = "256MB"

_TABLE = connection.ops.quote_name(HourlyMetric._meta.db_table)
_ZERO_SQL = (
    f"UPDATE {_TABLE} SET {', '.join(f'{c} = 0' for c in measures.COLUMNS)}, "  # noqa: S608 (names from the code)
    "day = (hour AT TIME ZONE %(tz)s)::date, computed_at = %(now)s WHERE hour >= %(start)s AND hour < %(end)s"
)
_PRUNE_SQL = (
    f"DELETE FROM {_TABLE} WHERE hour >= %(start)s AND hour < %(end)s AND "  # noqa: S608 (names from the code)
    + " AND ".join(f"{c} = 0" for c in measures.COLUMNS)
)


def _upsert_sql(group: measures.Group) -> str:
    columns = ", ".join(group.columns)
    return (
        f"INSERT INTO {_TABLE} AS m (hour, day, kind, currency, {columns}, computed_at)\n"
        f"SELECT g.hour, (g.hour AT TIME ZONE %(tz)s)::date, g.kind, g.currency, {columns}, %(now)s\n"
        f"FROM ({group.select}) AS g(hour, kind, currency, {columns})\n"
        "ON CONFLICT (hour, kind, currency) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in group.columns)
        + ", computed_at = EXCLUDED.computed_at"
    )


_UPSERTS = [_upsert_sql(group) for group in measures.HOURLY_GROUPS]

# The entries group over whole days: its hour rows (those of the range) into the hourly table, its day
# rows into the daily players; one scan and one sort (``measures.ENTRIES``).
_ENTRIES_COLUMNS = ", ".join(measures.ENTRIES.columns)
_ENTRIES_SQL = (
    f"WITH agg AS MATERIALIZED ({measures.ENTRIES.select}),\n"  # noqa: S608 (names from the code)
    "hourly AS (\n"
    f"    INSERT INTO {_TABLE} AS m (hour, day, kind, currency, {_ENTRIES_COLUMNS}, computed_at)\n"
    f"    SELECT hour, day, kind, currency, {_ENTRIES_COLUMNS}, %(now)s FROM agg\n"
    f"    WHERE level = {measures.HOUR_LEVEL} AND hour >= %(hour_start)s AND hour < %(hour_end)s\n"
    "    ON CONFLICT (hour, kind, currency) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in measures.ENTRIES.columns)
    + ", computed_at = EXCLUDED.computed_at\n)\n"
    + sql(
        "INSERT INTO {DailyPlayers} (day, kind, currency, unique_players, computed_at)\n",
        DailyPlayers=DailyPlayers,
    )
    + f"SELECT day, CASE WHEN level = {measures.ALL_DAY_LEVEL} THEN %(all)s ELSE kind END,\n"
    f"       CASE WHEN level = {measures.ALL_DAY_LEVEL} THEN %(all)s ELSE currency END, unique_players, %(now)s\n"
    f"FROM agg WHERE level <> {measures.HOUR_LEVEL} AND unique_players > 0"
)
_DAILY_CLEAR_SQL = sql(
    "DELETE FROM {DailyPlayers} WHERE day >= %(first)s AND day <= %(last)s", DailyPlayers=DailyPlayers
)


@dataclass(frozen=True)
class Recomputed:
    start: datetime
    end: datetime
    rows: int  # hourly rows in the range after the run
    days: tuple[date, date]  # the first and last day whose players were counted again
    seconds: float


def metrics_recompute(*, start: datetime, end: datetime, now: datetime | None = None) -> Recomputed:
    """Set the hours ``[start, end)`` (widened to whole hours) to what their sources say; idempotent.

    Also counts again the distinct players of every day those hours touch,
    over the whole day. One transaction, under the recomputations' advisory lock.
    """
    started = time.perf_counter()
    start, end = hour_of(start), hour_ceil(end)
    if end <= start:
        raise ValueError(f"an empty range of hours: {start.isoformat()} to {end.isoformat()}")
    now = now or timezone.now()
    params = {**measures.parameters(start=start, end=end, tz=settings.LOTTERY_TIME_ZONE), "now": now}
    first_day, last_day = params["days"][0], params["days"][-1]
    # The entries group reads whole days (their distinct players), and writes only the range's hours.
    days = {
        **params,
        "start": day_start(first_day),
        "end": day_start(last_day + timedelta(days=1)),
        "hour_start": start,
        "hour_end": end,
        "all": ALL_KINDS,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        cursor.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
        cursor.execute("SET LOCAL jit = off")  # compiling costs more than it saves on these few-row answers
        cursor.execute(_ZERO_SQL, params)
        cursor.execute(_DAILY_CLEAR_SQL, {"first": first_day, "last": last_day})
        cursor.execute(_ENTRIES_SQL, days)
        for statement in _UPSERTS:
            cursor.execute(statement, params)
        cursor.execute(_PRUNE_SQL, params)
        rows = HourlyMetric.objects.filter(hour__gte=start, hour__lt=end).count()
    result = Recomputed(start, end, rows, (first_day, last_day), time.perf_counter() - started)
    logger.info(
        "business metrics recomputed",
        extra={"start": start.isoformat(), "end": end.isoformat(), "rows": rows, "seconds": round(result.seconds, 3)},
    )
    return result


def metrics_refresh(*, now: datetime | None = None) -> Recomputed:
    """Recompute the hours of ``refresh_window``: the trailing METRICS_WINDOW_HOURS, the current one included,
    and any earlier hour not yet due (what beat runs)."""
    now = now or timezone.now()
    start, end = refresh_window(now)
    return metrics_recompute(start=start, end=end, now=now)


def backfill_chunks(*, start: datetime, end: datetime, days: int = 7) -> Iterator[tuple[datetime, datetime]]:
    """``[start, end)`` in pieces of ``days`` LOTTERY_TIME_ZONE days, cut at day starts (each day in one piece)."""
    start, end = hour_of(start), hour_ceil(end)
    piece_start = start
    while piece_start < end:
        piece_end = min(end, day_start(day_of(piece_start) + timedelta(days=days)))
        yield piece_start, piece_end
        piece_start = piece_end


def retention_start(now: datetime) -> date:
    """The first LOTTERY_TIME_ZONE day kept at ``now`` (METRICS_RETENTION_DAYS): the purge deletes those before."""
    return day_of(hour_of(now - timedelta(days=settings.METRICS_RETENTION_DAYS)))


def metrics_purge(*, now: datetime | None = None) -> int:
    """Delete hourly rows, daily players and the counters and tallies behind them past METRICS_RETENTION_DAYS.

    Whole LOTTERY_TIME_ZONE days: the first day kept keeps all its hours, as its players count them.
    """
    first_kept = retention_start(now or timezone.now())
    cutoff = day_start(first_kept)
    deleted = 0
    with transaction.atomic():
        for rows in (
            HourlyMetric.objects.filter(hour__lt=cutoff),
            DailyPlayers.objects.filter(day__lt=first_kept),
            HourlyTally.objects.filter(hour__lt=cutoff),
            ConsumerHourCounter.objects.filter(hour__lt=cutoff),
        ):
            count, _ = rows.delete()
            deleted += count
    if deleted:
        logger.info("business metrics purged", extra={"before": cutoff.isoformat(), "deleted": deleted})
    return deleted
