"""Award to SMS: the delay from an award's commit to its SMS being sent, while a broadcast runs.

Creates a throw-away database, --players players with phone numbers and a
notifications worker (prefork, --concurrency, as the Procfile's notifier),
the simulated gateway at zero latency. A broadcast to every player is
committed first, so the worker is busy with its batch chains; then this
process closes --awards drops, one entrant each, at --rate closes a second:
each close commits its award and the winner's SMS in one transaction, whose
kick queues the send on the same notifications queue. The delay of an award
is its SMS's ``sent_at`` (stamped by the worker) minus the close's commit.

A ballot load runs beside them: --ballot-threads threads of this process
submit ballots (``ballot_submit``, each a new player) into one open drop
for the whole measurement, as a hot drop's entrants would, so the
database the worker and the closes use is busy too.

Printed: p50/p90/p99/max of the delay (goal: p99 under 1 s), the ballots
per second the load kept up, and whether the broadcast was still running
when the last award was sent (it should be, or the run measured an idle
worker). Every award must get exactly one SMS; a missing one makes the run
invalid (exit 1).

Run from the project root:  .venv/bin/python bench/award_sms.py [--help]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database
lottery_bench_award_sms and flushes Redis database 14 (BENCH_REDIS_URL sets
another).
"""

import argparse
import os
import sys
import time
from datetime import timedelta

import _common
from broadcast import ZERO_LATENCY, start_worker, stop_worker

DB_NAME = "lottery_bench_award_sms"
_common.REDIS_URL = os.environ.get("BENCH_REDIS_URL", _common.REDIS_URL)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--players", type=int, default=300_000, help="the broadcast's audience (large enough to outlast the awards)"
    )
    parser.add_argument("--awards", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="closes per second")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's processes")
    parser.add_argument("--ballot-threads", type=int, default=4, help="threads submitting ballots beside (0: none)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(
        f"award_sms: {args.awards} awards at {args.rate:g}/s while a broadcast to {args.players:,} players runs; "
        f"a worker of {args.concurrency} processes, simulated gateway at zero latency",
        flush=True,
    )
    os.environ.update(ZERO_LATENCY)
    _common.setup_django(DB_NAME)
    _common.create_database(DB_NAME)
    _common.flush_redis()
    try:
        _common.migrate()
        return run(args)
    finally:
        _common.flush_redis()
        _common.drop_database(DB_NAME)
        print(f"  .. dropped database {DB_NAME}", flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class BallotLoad:
    """Threads submitting ballots into one open drop, each ballot a new player, until stopped."""

    def __init__(self, lottery_id: int, player_ids: list[int], threads: int) -> None:
        import threading

        self.lottery_id, self.stop = lottery_id, threading.Event()
        self.accepted = 0
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._submit, args=(player_ids[n::threads],), daemon=True) for n in range(threads)
        ]

    def _submit(self, player_ids: list[int]) -> None:
        from django.db import connection

        from entries.models import Player
        from entries.services import ballot_submit

        try:
            for player_id in player_ids:
                if self.stop.is_set():
                    return
                ballot_submit(lottery_id=self.lottery_id, player=Player(pk=player_id))
                with self._lock:
                    self.accepted += 1
        finally:
            connection.close()

    def __enter__(self) -> "BallotLoad":
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        self.seconds = time.monotonic() - self.started


def run(args: argparse.Namespace) -> int:  # Long: one scenario, set up, driven and measured in order
    from django.db import transaction
    from django.utils import timezone

    from core.db import copy_rows
    from entries.models import Player
    from entries.services import ballot_submit
    from lifecycle.services import lottery_close, lottery_open
    from notifications.models import Broadcast, Notification
    from notifications.services import broadcast_create

    copy_rows(
        Player,
        [{"username": f"fan-{i:07d}", "password": "!", "phone_number": f"+1557{i:07d}"} for i in range(args.players)],
    )
    winners = Player.objects.order_by("id")[: args.awards]
    now = timezone.now()
    drops = []
    for n, player in enumerate(winners):
        drop = lottery_open(kind="drop", title=f"Award {n}", day=now.date(), opens_at=now - timedelta(minutes=1),
                            closes_at=now + timedelta(hours=1), prize="Bench prize")  # fmt: skip
        ballot_submit(lottery_id=drop.pk, player=player)
        drops.append(drop)
    announced = lottery_open(kind="drop", title="Announced", day=now.date(), opens_at=now,
                             closes_at=now + timedelta(hours=1), prize="Bench prize")  # fmt: skip
    hot = lottery_open(kind="drop", title="Hot drop", day=now.date(), opens_at=now - timedelta(minutes=1),
                       closes_at=now + timedelta(hours=1), prize="Bench prize")  # fmt: skip
    entrants = list(Player.objects.order_by("id").values_list("id", flat=True)[args.awards :])
    _common.step(f"{args.players:,} players, {args.awards} drops with one entrant each")

    worker, log = start_worker(DB_NAME, args.concurrency)
    commits: dict[int, float] = {}
    try:
        with transaction.atomic():
            broadcast_create(lottery=announced, players=Player.objects.all(), body="Bench", now=timezone.now())
        _common.step(f"broadcast committed; closing the drops beside {args.ballot_threads} ballot threads")
        with BallotLoad(hot.pk, entrants, args.ballot_threads) as load:
            interval = 1 / args.rate
            next_at = time.monotonic()
            for drop in drops:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                lottery_close(lottery_id=drop.pk, source="system", force=True)
                commits[drop.pk] = time.time()
            deadline = time.monotonic() + 120
            while Notification.objects.filter(lottery_id__in=commits, kind="winner").exclude(state="sent").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("some winners' SMS were not sent within 120 s")
                time.sleep(0.05)
            still_broadcasting = Broadcast.objects.get(pk=announced.pk).finished_at is None
    finally:
        stop_worker(worker, log)

    sent = list(Notification.objects.filter(lottery_id__in=commits, kind="winner").values_list("lottery_id", "sent_at"))
    delays = [(sent_at.timestamp() - commits[lottery_id]) * 1000 for lottery_id, sent_at in sent]
    print("results")
    print(f"  delay     award commit to SMS sent: p50 {percentile(delays, 0.5):.0f} ms, p90 "
          f"{percentile(delays, 0.9):.0f} ms, p99 {percentile(delays, 0.99):.0f} ms, max {max(delays):.0f} ms"
          f"   (goal: p99 under 1000 ms)")  # fmt: skip
    print(
        f"  load      the broadcast was {'still running' if still_broadcasting else 'ALREADY FINISHED'} "
        f"when the last award was sent; beside it {load.accepted:,} ballots into one drop "
        f"({load.accepted / load.seconds:.0f}/s, {args.ballot_threads} threads)"
    )
    ok = len(sent) == args.awards
    print(f"  verify    {len(sent)} winner SMS for {args.awards} awards: {'ok' if ok else 'INVALID'}")
    p99 = percentile(delays, 0.99)
    _common.summary(
        "award_sms",
        valid=ok and still_broadcasting,
        figures={
            "p50_ms": round(percentile(delays, 0.5)),
            "p99_ms": round(p99),
            "max_ms": round(max(delays)),
            "ballots_per_s_beside": round(load.accepted / load.seconds),
        },
        goals={"p99 under 1000 ms": p99 < 1000},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
