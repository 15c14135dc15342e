"""Rebuilding a month of hourly business metrics, beside one bare GROUP BY of the same aggregates.

Fills a throw-away database with 30 days of activity at the drop yardstick,
written straight in SQL (generate_series; nothing goes through the services):

* one drop whose single hour holds 1,000,000 ballots (1 % of them rejected as fraud),
  from 1,000,000 players;
* a daily lottery per day (3,000 ballots each) and two drops per day (10,000 each), all drawn,
  with an award and a winner SMS each (2 % of the SMS failed, some drop awards claimed or forfeited);
* 100,000 stakes spread evenly over the month into pools of 3 in three currencies, each pool's
  three ballots, draw, award (win_sum) and SMS; every 20th pool cancelled instead;
* the stake consumer's hourly counters (1 % duplicates, a dead letter every ten hours, stored),
  and refused-ballot tallies (the busy hour: 20,000 ``lottery_closed``).

Then measures, in this process, each after one warming run, median of ``--rounds``:

* baseline: ONE bare ``SELECT ... GROUP BY hour, kind, currency`` computing the same hourly
  aggregates over a UNION ALL of every source, writing nothing;
* ``manage.py backfill_metrics`` over the 30 days: the hourly table and the daily players
  written, as in production; its speed against the baseline's (goal: at least 0.5);
* ``analytics.services.metrics_refresh``, beat's trailing-window task (METRICS_WINDOW_HOURS, 24),
  run at the end of the busiest hour (goal: under 1 s);
* its floor: one bare ``count(*), count(DISTINCT player_id)`` of the busy day's ballots, the least
  an exact recount of that day must do (its players are counted over the whole day, never summed).

The run is valid when the table's totals equal the bare query's. Prints the figures, the
slowest statements of one backfill, and a JSON summary as the last line.

Run from the project root:  .venv/bin/python bench/backfill_metrics.py [--help]
Uses (and drops) the database lottery_bench_metrics.
"""

import argparse
import io
import statistics
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import _common

DB_NAME = "lottery_bench_metrics"
DAYS = 30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy-ballots", type=int, default=1_000_000, help="ballots in the busiest hour")
    parser.add_argument("--stakes", type=int, default=100_000, help="stakes over the month")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs of each (after one warming run)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards, to look into it")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(
        f"backfill_metrics: {DAYS} days, {args.busy_ballots:,} ballots in the busiest hour, "
        f"{args.stakes:,} stakes over the month",
        flush=True,
    )
    _common.setup_django(DB_NAME)
    _common.create_database(DB_NAME)
    try:
        return run(args)
    finally:
        if args.keep:
            print(f"  .. kept database {DB_NAME}", flush=True)
        else:
            _common.drop_database(DB_NAME)
            print(f"  .. dropped database {DB_NAME}", flush=True)


# --- The month's activity, in SQL --------------------------------------------------------------

PLAYERS_SQL = """
INSERT INTO entries_player (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
    date_joined, phone_number, external_account_id, is_banned, ban_reason, sms_opt_in_source, sms_opt_out_source)
SELECT '!', FALSE, 'bench-' || g, '', '', '', FALSE, TRUE, %(start)s, '', '', FALSE, '', '', ''
FROM generate_series(1, %(players)s) g
"""

# Lotteries: day d's daily lottery, its two drops, the busy drop, and the pools (game, currency by number).
LOTTERIES_SQL = """
INSERT INTO lotteries_lottery (kind, state, title, day, opens_at, closes_at, prize, prize_quantity, winners_count,
    alternates_count, seed_commitment, game_id, currency, pool_size, pot, payout_ratio, created_at, updated_at)
SELECT kind, state, title, opens_at::date, opens_at, closes_at, prize, 1, 1, 0, repeat('0', 64),
       game_id, currency, pool_size, pot, ratio, opens_at, closes_at
FROM (
    SELECT 'daily' AS kind, 'drawn' AS state, 'Daily ' || d AS title, %(start)s + d * interval '1 day' AS opens_at,
           %(start)s + (d + 1) * interval '1 day' AS closes_at, 'Daily prize' AS prize, '' AS game_id,
           '' AS currency, NULL::int AS pool_size, 0 AS pot, NULL::numeric AS ratio, 0 AS sort
    FROM generate_series(0, %(days)s - 1) d
    UNION ALL
    SELECT 'drop', 'drawn', 'Drop ' || d || '-' || k,
           %(start)s + d * interval '1 day' + (8 + 6 * k) * interval '1 hour',
           %(start)s + d * interval '1 day' + (11 + 6 * k) * interval '1 hour', 'Sneakers', '', '', NULL, 0, NULL, 1
    FROM generate_series(0, %(days)s - 1) d CROSS JOIN generate_series(0, 1) k
    UNION ALL
    SELECT 'drop', 'drawn', 'The busy drop', %(busy)s, %(busy)s + interval '1 hour', 'Console', '', '', NULL, 0, NULL, 2
    UNION ALL
    SELECT 'pool', CASE WHEN p %% 20 = 19 THEN 'cancelled' ELSE 'drawn' END, 'Pool ' || p,
           %(start)s + (3 * p) * %(stake_step)s, %(start)s + (3 * p + 2) * %(stake_step)s + interval '1 second',
           '', 'slots-' || (p %% 5), (ARRAY['EUR', 'GBP', 'USD'])[1 + p %% 3], 3, 30, 0.9, 3
    FROM generate_series(0, %(pools)s - 1) p
) l
ORDER BY l.sort, l.opens_at
"""

BALLOTS_SQL = """
INSERT INTO entries_ballot (lottery_id, player_id, status, slot, phone_number, external_account_id,
    rejection_reason, voided_at, idempotency_key, created_at)
SELECT lottery_id, player_id,
       CASE WHEN fraud THEN 'rejected' ELSE 'valid' END, CASE WHEN fraud THEN NULL ELSE 1 END, '', '',
       CASE WHEN fraud THEN 'shared_phone_number' ELSE '' END, NULL, NULL, created_at
FROM (
    -- the daily lotteries and the day's drops: spread over their windows
    SELECT l.id AS lottery_id, %(p0)s + (l.id * 7919 + g) %% %(players)s AS player_id, g %% 100 = 99 AS fraud,
           l.opens_at + (l.closes_at - l.opens_at) * (g::float / n.n) AS created_at
    FROM lotteries_lottery l
    JOIN (VALUES ('daily', 3000), ('drop', 10000)) AS n(kind, n) ON n.kind = l.kind
    CROSS JOIN LATERAL generate_series(0, n.n - 1) g
    WHERE l.title <> 'The busy drop'
    UNION ALL
    -- the busy drop's hour
    SELECT l.id, %(p0)s + g, g %% 100 = 99, l.opens_at + interval '1 hour' * (g::float / %(busy_ballots)s)
    FROM lotteries_lottery l CROSS JOIN generate_series(0, %(busy_ballots)s - 1) g
    WHERE l.title = 'The busy drop'
    UNION ALL
    -- each pool's three players, entering with their stakes
    SELECT l.id, %(p0)s + ((3 * p + k) * 7919) %% %(players)s, FALSE, %(start)s + (3 * p + k) * %(stake_step)s
    FROM generate_series(0, %(pools)s - 1) p CROSS JOIN generate_series(0, 2) k
    JOIN lotteries_lottery l ON l.title = 'Pool ' || p
) b
ORDER BY created_at
"""

STAKES_SQL = """
INSERT INTO entries_stake (stake_id, player_id, lottery_id, ballot_id, game_id, amount, currency, occurred_at,
    created_at, traceparent)
SELECT 'stake-' || s, %(p0)s + (s * 7919) %% %(players)s, l.id, NULL, l.game_id, 10, l.currency,
       %(start)s + s * %(stake_step)s, %(start)s + s * %(stake_step)s, ''
FROM generate_series(0, %(stakes)s - 1) s
JOIN lotteries_lottery l ON l.title = 'Pool ' || (s / 3)
ORDER BY s
"""

DRAWS_SQL = """
INSERT INTO draws_draw (lottery_id, algorithm_version, seed_commitment, seed, entries_digest, entries_count,
    winners_count, winning_ballot_ids, alternates_count, alternate_ballot_ids, unawarded_quantity, drawn_at)
SELECT l.id, 'hmac-sha256-fy-v1', repeat('0', 64), repeat('1', 64), repeat('2', 64), 1, 1,
       ARRAY[(SELECT min(b.id) FROM entries_ballot b WHERE b.lottery_id = l.id AND b.status = 'valid')], 0, '{}', 0,
       l.closes_at
FROM lotteries_lottery l WHERE l.state = 'drawn' ORDER BY l.closes_at
"""

AWARDS_SQL = """
INSERT INTO draws_lotteryaward (lottery_id, draw_id, ballot_id, player_id, rank, prize, win_sum, currency, status,
    claim_deadline, claimed_at, forfeited_at, forfeit_reason, promoted_from_id, alternate_rank, created_at)
SELECT d.lottery_id, d.id, b.id, b.player_id, 1, l.prize,
       CASE WHEN l.kind = 'pool' THEN 27 END, l.currency,
       CASE WHEN l.kind <> 'drop' THEN 'played_out' WHEN d.id %% 3 = 0 THEN 'forfeited' ELSE 'claimed' END,
       CASE WHEN l.kind = 'drop' THEN d.drawn_at + interval '1 day' END,
       CASE WHEN l.kind = 'drop' AND d.id %% 3 <> 0 THEN d.drawn_at + interval '1 hour' END,
       CASE WHEN l.kind = 'drop' AND d.id %% 3 = 0 THEN d.drawn_at + interval '1 day' END,
       CASE WHEN l.kind = 'drop' AND d.id %% 3 = 0 THEN 'unclaimed' ELSE '' END,
       NULL, NULL, d.drawn_at
FROM draws_draw d
JOIN lotteries_lottery l ON l.id = d.lottery_id
JOIN entries_ballot b ON b.id = d.winning_ballot_ids[1]
ORDER BY d.drawn_at
"""

SMS_SQL = """
INSERT INTO notifications_notification (kind, lottery_id, player_id, award_id, recipient, body, state, attempts,
    next_attempt_at, lease_expires_at, queued_at, latency_ms, gateway_message_id, last_error, resent_by_id,
    resent_at, created_at, updated_at, sent_at)
SELECT 'winner', a.lottery_id, a.player_id, a.id, '+12015550100', 'You won', s.state, 1, a.created_at, NULL,
       a.created_at, 100, '', '', NULL, NULL, a.created_at, a.created_at + interval '2 seconds',
       CASE WHEN s.state = 'sent' THEN a.created_at + interval '2 seconds' END
FROM draws_lotteryaward a
CROSS JOIN LATERAL (SELECT CASE WHEN a.id %% 50 = 0 THEN 'failed' ELSE 'sent' END AS state) s
ORDER BY a.id
"""

CANCELLED_SQL = """
INSERT INTO lotteries_lotterytransition (lottery_id, from_state, to_state, source, actor_id, forced, note, created_at)
SELECT l.id, 'open', 'cancelled', 'beat', NULL, FALSE, 'pool short of players', l.closes_at
FROM lotteries_lottery l WHERE l.state = 'cancelled'
"""

# The consumer's hourly counters (received = applied + duplicate + dead-lettered), its dead letters, and the
# refusal tallies, hour by hour.
COUNTERS_SQL = """
WITH applied AS (
    SELECT date_trunc('hour', created_at, 'UTC') AS h, count(*) AS n FROM entries_stake GROUP BY 1
), hours AS (
    SELECT h, coalesce(a.n, 0) AS applied, CASE WHEN extract(hour FROM h)::int %% 10 = 0 THEN 1 ELSE 0 END AS dead
    FROM generate_series(%(start)s, %(end)s - interval '1 hour', interval '1 hour') h LEFT JOIN applied a USING (h)
)
INSERT INTO outbox_consumerhourcounter (consumer, topic, partition, hour, received, applied, duplicate,
    dead_lettered)
SELECT 'stakes', 'player.v1.staked', 0, h, applied + applied / 100 + dead, applied, applied / 100, dead FROM hours
"""

DEAD_LETTERS_SQL = """
INSERT INTO outbox_deadletter (consumer, topic, partition, "offset", key, value, headers, digest, reason, error,
    status, created_at, replayed_at)
SELECT 'stakes', 'player.v1.staked', 0, row_number() OVER (ORDER BY hour), NULL, '{'::bytea, '{}', md5(hour::text),
       'bad_json', 'Expecting property name', 'open', hour + interval '30 minutes', NULL
FROM outbox_consumerhourcounter WHERE dead_lettered > 0
"""

TALLIES_SQL = """
INSERT INTO core_hourlytally (hour, measure, dimension, code, count)
SELECT h, 'ballot_refused', 'drop', c.code, c.n
FROM generate_series(%(start)s, %(end)s - interval '1 hour', interval '1 hour') h
CROSS JOIN (VALUES ('lottery_closed', 5), ('ballot_limit_reached', 3)) AS c(code, n)
WHERE h <> %(busy)s
UNION ALL
SELECT %(busy)s, 'ballot_refused', 'drop', 'lottery_closed', 20000
"""


def fill(args: argparse.Namespace, start: datetime, busy: datetime) -> dict[str, int]:
    from django.db import connection

    end = start + timedelta(days=DAYS)
    pools = args.stakes // 3
    players = max(args.busy_ballots, 100_000)
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "busy": busy,
        "days": DAYS,
        "players": players,
        "busy_ballots": args.busy_ballots,
        "pools": pools,
        "stakes": pools * 3,
        "stake_step": timedelta(days=DAYS) / (pools * 3),
    }
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for name, statement in [
            ("players", PLAYERS_SQL),
            ("lotteries", LOTTERIES_SQL),
            ("ballots", BALLOTS_SQL),
            ("stakes", STAKES_SQL),
            ("draws", DRAWS_SQL),
            ("awards", AWARDS_SQL),
            ("sms", SMS_SQL),
            ("cancellations", CANCELLED_SQL),
            ("consumer hour counters", COUNTERS_SQL),
            ("dead letters", DEAD_LETTERS_SQL),
            ("tallies", TALLIES_SQL),
        ]:
            started = time.perf_counter()
            if name == "ballots":
                cursor.execute("SELECT min(id) FROM entries_player")
                params["p0"] = cursor.fetchone()[0]
            cursor.execute(statement, params)
            counts[name] = cursor.rowcount
            _common.step(f"{cursor.rowcount:>9,} {name} ({time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE")
        _common.step(f"VACUUM ANALYZE ({time.perf_counter() - started:.1f} s)")
    return counts


# --- The baseline: the same hourly aggregates in one bare GROUP BY --------------------------------
# Its hours as the platform finds them (analytics.measures): date_bin, not date_trunc with a zone,
# which would slow the baseline by about a second per million rows.

BARE_SQL = """
SELECT e.hour, coalesce(l.kind, e.kind), coalesce(l.currency, ''),
       count(*) FILTER (WHERE e.src = 'ballot' AND e.flag),
       count(*) FILTER (WHERE e.src = 'ballot' AND NOT e.flag),
       count(DISTINCT e.player_id) FILTER (WHERE e.src IN ('ballot', 'stake') AND e.flag),
       sum(e.amount) FILTER (WHERE e.src = 'stake'),
       sum(e.n) FILTER (WHERE e.src = 'received'), count(*) FILTER (WHERE e.src = 'stake'),
       sum(e.n) FILTER (WHERE e.src = 'duplicate'), sum(e.n) FILTER (WHERE e.src = 'dead'),
       sum(e.n) FILTER (WHERE e.src = 'refused'),
       sum(e.amount) FILTER (WHERE e.src = 'awarded'), count(*) FILTER (WHERE e.src = 'awarded'),
       count(*) FILTER (WHERE e.src = 'claimed'), count(*) FILTER (WHERE e.src = 'forfeited'),
       count(*) FILTER (WHERE e.src = 'drawn'), count(*) FILTER (WHERE e.src = 'cancelled'),
       count(*) FILTER (WHERE e.src = 'sent'), count(*) FILTER (WHERE e.src = 'failed')
FROM (
    SELECT date_bin('1 hour', created_at, 'epoch') AS hour, lottery_id, player_id, status <> 'rejected' AS flag,
           'ballot' AS src, NULL::numeric AS amount, NULL::bigint AS n, NULL AS kind
    FROM entries_ballot WHERE created_at >= %(start)s AND created_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', created_at, 'epoch'), lottery_id, player_id, TRUE, 'stake', amount, NULL, NULL
    FROM entries_stake WHERE created_at >= %(start)s AND created_at < %(end)s
    UNION ALL SELECT hour, NULL, NULL, TRUE, x.src, NULL, x.n, 'pool'
    FROM outbox_consumerhourcounter
    CROSS JOIN LATERAL (VALUES ('received', received), ('duplicate', duplicate), ('dead', dead_lettered)) x(src, n)
    WHERE hour >= %(start)s AND hour < %(end)s
    UNION ALL SELECT hour, NULL, NULL, TRUE, 'refused', NULL, count, dimension
    FROM core_hourlytally WHERE measure = 'ballot_refused' AND hour >= %(start)s AND hour < %(end)s
    UNION ALL SELECT date_bin('1 hour', created_at, 'epoch'), lottery_id, NULL, TRUE, 'awarded', win_sum, NULL, NULL
    FROM draws_lotteryaward WHERE created_at >= %(start)s AND created_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', claimed_at, 'epoch'), lottery_id, NULL, TRUE, 'claimed', NULL, NULL, NULL
    FROM draws_lotteryaward WHERE claimed_at >= %(start)s AND claimed_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', forfeited_at, 'epoch'), lottery_id, NULL, TRUE, 'forfeited', NULL, NULL, NULL
    FROM draws_lotteryaward WHERE forfeited_at >= %(start)s AND forfeited_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', drawn_at, 'epoch'), lottery_id, NULL, TRUE, 'drawn', NULL, NULL, NULL
    FROM draws_draw WHERE drawn_at >= %(start)s AND drawn_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', created_at, 'epoch'), lottery_id, NULL, TRUE, 'cancelled', NULL, NULL, NULL
    FROM lotteries_lotterytransition
    WHERE to_state = 'cancelled' AND created_at >= %(start)s AND created_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', sent_at, 'epoch'), lottery_id, NULL, TRUE, 'sent', NULL, NULL, NULL
    FROM notifications_notification WHERE state = 'sent' AND sent_at >= %(start)s AND sent_at < %(end)s
    UNION ALL SELECT date_bin('1 hour', updated_at, 'epoch'), lottery_id, NULL, TRUE, 'failed', NULL, NULL, NULL
    FROM notifications_notification WHERE state = 'failed' AND updated_at >= %(start)s AND updated_at < %(end)s
) e
LEFT JOIN lotteries_lottery l ON l.id = e.lottery_id
GROUP BY 1, 2, 3
"""

# What the valid run compares: (bare query's column index, the table's column).
TOTALS = [
    (3, "ballots_accepted"),
    (4, "fraud_rejections"),
    (6, "staked_revenue"),
    (7, "stakes_received"),
    (8, "stakes_applied"),
    (12, "payouts"),
    (13, "prizes_awarded"),
    (16, "draws"),
    (17, "lotteries_cancelled"),
    (18, "sms_sent"),
    (19, "sms_failed"),
]


# The least an exact trailing window at the busy hour must do: count the busy day's ballots and
# their distinct players, once, over the whole day (a day's players are never a sum of its hours).
FLOOR_SQL = """
SELECT count(*), count(DISTINCT player_id) FROM entries_ballot WHERE created_at >= %(start)s AND created_at < %(end)s
"""


def floor(start: datetime, end: datetime) -> tuple[int, int]:
    ballots, players = _bare_query(FLOOR_SQL, start, end)[0]
    return ballots, players


def bare(start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    return _bare_query(BARE_SQL, start, end)


def _bare_query(statement: str, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        # The session settings the recomputation gives itself: sorts in memory, no JIT.
        cursor.execute(f"SET work_mem = '{_work_mem()}'")
        cursor.execute("SET jit = off")
        cursor.execute(statement, {"start": start, "end": end})
        rows = cursor.fetchall()
        cursor.execute("RESET work_mem")
        cursor.execute("RESET jit")
    return rows


def _work_mem() -> str:
    from analytics import services

    return services._WORK_MEM


def timed(function: Any, rounds: int) -> tuple[float, list[float], Any]:
    result = function()  # warming run
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def run(args: argparse.Namespace) -> int:
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from analytics.days import day_hours, day_of
    from analytics.models import DailyPlayers, HourlyMetric
    from analytics.services import hour_of, metrics_refresh

    started = time.perf_counter()
    _common.migrate()
    _common.step(f"database {DB_NAME} migrated ({time.perf_counter() - started:.1f} s)")
    end = hour_of(timezone.now()) - timedelta(hours=1)
    start = end - timedelta(days=DAYS)
    busy = start + timedelta(days=DAYS // 2, hours=20)
    counts = fill(args, start, busy)

    bare_seconds, bare_times, bare_rows = timed(lambda: bare(start, end), args.rounds)
    _common.step(f"bare GROUP BY: {len(bare_rows)} rows")

    def backfill() -> None:
        call_command("backfill_metrics", "--from", start.isoformat(), "--to", end.isoformat(), stdout=io.StringIO())

    backfill_seconds, backfill_times, _ = timed(backfill, args.rounds)
    with CaptureQueriesContext(connection) as queries:
        backfill()
    slowest = sorted(queries.captured_queries, key=lambda q: float(q["time"]), reverse=True)[:4]

    refresh_seconds, refresh_times, refreshed = timed(
        lambda: metrics_refresh(now=busy + timedelta(minutes=59, seconds=59)), args.rounds
    )
    floor_seconds, floor_times, (day_ballots, day_players) = timed(lambda: floor(*day_hours(day_of(busy))), args.rounds)

    table = HourlyMetric.objects.filter(hour__gte=start, hour__lt=end).aggregate(
        **{column: Sum(column) for _, column in TOTALS}
    )
    mismatches = {
        column: (sum(row[index] or 0 for row in bare_rows), table[column])
        for index, column in TOTALS
        if sum(row[index] or 0 for row in bare_rows) != table[column]
    }
    busy_rows = HourlyMetric.objects.filter(hour=busy, kind="drop")
    busy_players = busy_rows.aggregate(players=Sum("unique_players"))["players"]
    expected_busy_players = args.busy_ballots - args.busy_ballots // 100
    busy_day = DailyPlayers.objects.filter(day=busy.date(), kind="*").values_list("unique_players", flat=True).first()

    ratio = bare_seconds / backfill_seconds
    print("results (a shared machine: figures are noisy)")
    print(f"  data      {counts['ballots']:,} ballots, {counts['stakes']:,} stakes, {counts['draws']:,} draws, "
          f"{counts['sms']:,} SMS over {DAYS} days")  # fmt: skip
    print(f"  baseline  one bare GROUP BY over every source:   {bare_seconds * 1000:8.1f} ms "
          f"(median of {args.rounds}: {_ms(bare_times)})")  # fmt: skip
    print(f"  backfill  manage.py backfill_metrics, {DAYS} days:  {backfill_seconds * 1000:8.1f} ms "
          f"(median of {args.rounds}: {_ms(backfill_times)})")  # fmt: skip
    print(f"            speed against the bare query: {ratio:.2f}   (goal: at least 0.5)")
    print(f"            {len(queries.captured_queries)} SQL statements; slowest:")
    for query in slowest:
        print(f"              {float(query['time']) * 1000:8.1f} ms  {' '.join(query['sql'].split())[:90]}")
    hours = (refreshed.end - refreshed.start) // timedelta(hours=1)
    print(f"  trailing  metrics_refresh at the busiest hour's end ({hours} h window): {refresh_seconds * 1000:8.1f} ms "
          f"(median of {args.rounds}: {_ms(refresh_times)})   (goal: under 1000 ms)")  # fmt: skip
    print(f"  floor     one bare count of the busy day's {day_ballots:,} ballots and {day_players:,} distinct players: "
          f"{floor_seconds * 1000:8.1f} ms (median of {args.rounds}: {_ms(floor_times)}); "
          f"the trailing window takes {refresh_seconds / floor_seconds:.1f} times that")  # fmt: skip
    print(f"  check     busy hour's players {busy_players:,} (expected {expected_busy_players:,}), "
          f"its day's {busy_day:,}; totals equal the bare query's: {not mismatches}")  # fmt: skip
    ok = not mismatches and busy_players == expected_busy_players
    if not ok:
        print(f"  !! INVALID RUN: {mismatches or 'the busy hour miscounted'}")
    _common.summary(
        "backfill_metrics",
        valid=ok,
        figures={
            "backfill_ms": round(backfill_seconds * 1000, 1),
            "bare_group_by_ms": round(bare_seconds * 1000, 1),
            "trailing_window_ms": round(refresh_seconds * 1000, 1),
            "busy_day_count_floor_ms": round(floor_seconds * 1000, 1),
            "busy_hour_ballots": args.busy_ballots,
            "stakes": counts["stakes"],
        },
        ratios={
            "backfill speed/bare": round(ratio, 3),
            "trailing window/floor": round(refresh_seconds / floor_seconds, 2),
        },
        goals={"backfill speed/bare >= 0.5": ratio >= 0.5, "trailing window under 1 s": refresh_seconds < 1.0},
    )
    return 0 if ok else 1


def _ms(times: list[float]) -> str:
    return ", ".join(f"{t * 1000:.0f}" for t in times)


if __name__ == "__main__":
    sys.exit(main())
