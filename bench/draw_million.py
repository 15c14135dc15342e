"""Draw time and memory for one lottery of 1,000,000 ballots, beside a plain count of them.

Fills a throw-away database with one closed-window lottery holding a
million valid ballots, then measures in this process:

* baseline: the entries-digest query alone (``DIGEST_SQL``, pinned: the statement the draw ran
  before it read the ballots in one pass; a rewritten draw must not move its own yardstick), and
  ``SELECT count(*)`` of the lottery's valid ballots, for continuity (medians of 5, after one
  warming run of each);
* ``lifecycle.services.lottery_close`` (close and draw in one transaction): wall time, its ratio to
  the digest query, the process's extra peak RSS (VmHWM after resetting it, and VmRSS sampled every
  2 ms) and the tracemalloc peak;
* ``draws.services.draw_verify`` on the resulting draw: wall time, extra peak RSS, and whether it matched.

Goals for the draw: at most 1.3 times the digest query, under 2 s, under 100 MB of extra memory. PostgreSQL's own
memory (the server process) is not counted: only this client process's.

Run from the project root:  .venv/bin/python bench/draw_million.py [--help]
Uses (and drops) the database lottery_bench_draw.
"""

import argparse
import gc
import statistics
import sys
import threading
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import _common

DB_NAME = "lottery_bench_draw"
COUNT_SQL = "SELECT count(*) FROM entries_ballot WHERE lottery_id = %s AND status = 'valid'"
# Pinned yardstick: the draw's digest statement as it was when the goal was set (one scan, sha256 in PostgreSQL).
DIGEST_SQL = (
    "SELECT count(*), encode(sha256(coalesce(string_agg(int8send(id), ''::bytea ORDER BY id), ''::bytea)), 'hex') "
    "FROM entries_ballot WHERE lottery_id = %s AND status = 'valid'"
)
DIGEST_GOAL = 1.3
# Player k of n gets ballots k, k+n, k+2n...: slot is the ballot's ordinal for its player, so
# (lottery, player, slot) is unique; empty phone and account are never "shared" (fraud constraints).
INSERT_SQL = """
INSERT INTO entries_ballot (
    lottery_id, player_id, status, slot, phone_number, external_account_id,
    rejection_reason, voided_at, idempotency_key, created_at
)
SELECT %(lottery_id)s, (%(player_ids)s::bigint[])[1 + mod(g - 1, %(players)s)], 'valid',
       1 + (g - 1) / %(players)s, '', '', '', NULL, NULL, now()
FROM generate_series(1, %(ballots)s) AS g
"""
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ballots", type=int, default=1_000_000)
    parser.add_argument("--players", type=int, default=1_000)
    parser.add_argument("--winners", type=int, default=10, help="the lottery's winners_count")
    args = parser.parse_args()
    if args.ballots > args.players * 32_767:
        parser.error("too few players: a slot is a smallint")
    return args


def main() -> int:
    args = parse_args()
    print(
        f"draw_million: {args.ballots:,} valid ballots of {args.players:,} players in one lottery, "
        f"{args.winners} winner(s)",
        flush=True,
    )
    _common.setup_django(DB_NAME)
    _common.create_database(DB_NAME)
    try:
        return run(args)
    finally:
        _common.drop_database(DB_NAME)
        print(f"  .. dropped database {DB_NAME}", flush=True)


def run(args: argparse.Namespace) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from draws.services import draw_verify
    from lifecycle.services import lottery_close

    started = time.perf_counter()
    _common.migrate()
    _common.step(f"database {DB_NAME} migrated ({time.perf_counter() - started:.1f} s)")
    lottery_id = fill(args)

    with connection.cursor() as cursor:
        (count,), baseline = median_time(cursor, COUNT_SQL, lottery_id)
        (_, pinned_digest), digest_baseline = median_time(cursor, DIGEST_SQL, lottery_id)

    with PeakMemory(trace_python=True) as draw_memory, CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        outcome = lottery_close(lottery_id=lottery_id, source="command")
        draw_seconds = time.perf_counter() - started
    draw = outcome.draw

    with PeakMemory(trace_python=False) as verify_memory:
        started = time.perf_counter()
        verification = draw_verify(draw=draw)
        verify_seconds = time.perf_counter() - started

    slowest = sorted(queries.captured_queries, key=lambda q: float(q["time"]), reverse=True)[:3]
    ratio = draw_seconds / digest_baseline
    print("results")
    print(f"  baseline  digest query (pinned):  {digest_baseline * 1000:8.1f} ms (median of 5)")
    print(f"            SELECT count(*) = {count:,}: {baseline * 1000:8.1f} ms (median of 5)")
    print(
        f"  draw      lottery_close:      {draw_seconds * 1000:8.1f} ms = {ratio:.2f} x the digest query"
        f" (goal: at most {DIGEST_GOAL}), {draw_seconds / baseline:.1f} x count(*)   (goal: under 2000 ms)"
    )
    print(
        f"            {len(queries.captured_queries)} SQL statements in Django's log (not the entries read, which"
        " runs on a binary cursor of its own); slowest:"
    )
    for query in slowest:
        print(f"              {float(query['time']) * 1000:8.1f} ms  {' '.join(query['sql'].split())[:90]}")
    print(f"  memory    {draw_memory.describe()}   (goal: under 100 MB)")
    print(
        f"  outcome   state {outcome.lottery.state}, entries_count {draw.entries_count:,}, "
        f"winning ballot ids {list(draw.winning_ballot_ids)}"
    )
    print(
        f"  verify    draw_verify: {verify_seconds * 1000:8.1f} ms = {verify_seconds / baseline:.1f} x count(*); "
        f"matches: {verification.matches} (commitment {verification.commitment_matches}, "
        f"digest {verification.entries_digest_matches}, winners {verification.winners_match})"
    )
    print(f"            {verify_memory.describe()}")
    valid = (
        draw.entries_count == count == args.ballots and verification.matches and draw.entries_digest == pinned_digest
    )
    if not valid:
        print("  !! INVALID RUN: the draw did not see every ballot, its digest differs from the pinned query's,")
        print("     or its verification failed")
    extra_mb = draw_memory.extra_mb()
    _common.summary(
        "draw_million",
        valid=valid,
        figures={
            "draw_ms": round(draw_seconds * 1000, 1),
            "digest_query_ms": round(digest_baseline * 1000, 1),
            "count_ms": round(baseline * 1000, 1),
            "verify_ms": round(verify_seconds * 1000, 1),
            "extra_peak_mb": round(extra_mb, 1),
        },
        ratios={"draw/digest_query": round(ratio, 2)},
        goals={
            "draw/digest_query <= 1.3": ratio <= DIGEST_GOAL,
            "draw under 2 s": draw_seconds < 2,
            "extra memory under 100 MB": extra_mb < 100,
        },
    )
    return 0 if valid else 1


def median_time(cursor: Any, statement: str, lottery_id: int) -> tuple[Any, float]:
    """(the row, the median wall time of 5 runs after one warming run) of ``statement``."""
    cursor.execute(statement, [lottery_id])
    times = []
    for _ in range(5):
        started = time.perf_counter()
        cursor.execute(statement, [lottery_id])
        row = cursor.fetchone()
        times.append(time.perf_counter() - started)
    return row, statistics.median(times)


def fill(args: argparse.Namespace) -> int:
    from django.db import connection
    from django.utils import timezone

    from entries.models import Player
    from lifecycle.services import lottery_open

    started = time.perf_counter()
    players = Player.objects.bulk_create(
        (Player(username=f"bench-{i:06d}", password="!") for i in range(args.players)), batch_size=5_000
    )
    now = timezone.now()
    # lottery_open only asks closes_at > opens_at: a window already over makes the lottery due.
    lottery = lottery_open(
        kind="drop",
        title="Benchmark: a million ballots",
        day=now.date(),
        opens_at=now - timedelta(days=2),
        closes_at=now - timedelta(days=1),
        prize="Benchmark prize",
        winners_count=args.winners,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_SQL,
            {
                "lottery_id": lottery.pk,
                "player_ids": [p.pk for p in players],
                "players": len(players),
                "ballots": args.ballots,
            },
        )
        inserted = time.perf_counter()
        _common.step(f"{cursor.rowcount:,} ballots inserted ({inserted - started:.1f} s)")
        cursor.execute("VACUUM ANALYZE entries_ballot")
        _common.step(f"VACUUM ANALYZE ({time.perf_counter() - inserted:.1f} s)")
    return int(lottery.pk)


# --- Memory ----------------------------------------------------------------------


def proc_status_kb(field: str) -> int:
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """This process's extra resident memory while the block runs, measured three ways.

    * VmHWM (the kernel's peak RSS) after resetting it through /proc/self/clear_refs: exact;
    * VmRSS sampled by a thread every ``interval`` seconds (the main thread waits on the
      database socket, with the GIL released, so the sampler runs);
    * with ``trace_python``, the tracemalloc peak: Python allocations only.
    """

    def __init__(self, *, trace_python: bool, interval: float = 0.002) -> None:
        self.trace_python = trace_python
        self.interval = interval
        self.hwm_reset = False
        self.sampled_peak_kb = 0
        self.hwm_kb = 0
        self.tracemalloc_peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        self.base_kb = proc_status_kb("VmRSS")
        try:
            CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.sampled_peak_kb = self.base_kb
        self._sampler.start()
        if self.trace_python:
            tracemalloc.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.trace_python:
            self.tracemalloc_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        self._stop.set()
        self._sampler.join()
        self.hwm_kb = proc_status_kb("VmHWM")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled_peak_kb = max(self.sampled_peak_kb, proc_status_kb("VmRSS"))
            time.sleep(self.interval)

    def extra_mb(self) -> float:
        """The extra peak: VmHWM's when it could be reset, else the sampled one."""
        peak_kb = self.hwm_kb if self.hwm_reset else self.sampled_peak_kb
        return (peak_kb - self.base_kb) / 1024

    def describe(self) -> str:
        parts = []
        if self.hwm_reset:
            parts.append(f"extra peak RSS {(self.hwm_kb - self.base_kb) / 1024:.1f} MB (VmHWM)")
        parts.append(f"{(self.sampled_peak_kb - self.base_kb) / 1024:.1f} MB (VmRSS sampled)")
        if self.trace_python:
            parts.append(f"tracemalloc peak {self.tracemalloc_peak / 2**20:.1f} MB")
        return ", ".join(parts) + f"; base RSS {self.base_kb / 1024:.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
