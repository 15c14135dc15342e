"""Broadcast: SMS sent per second to 100,000 players, beside a bare loop of the same per-batch SQL.

Creates a throw-away database with --players players (each with a phone
number) and two drops, and broadcasts to all of them twice, with the
simulated gateway at zero latency and no failures:

* bare: this process runs, batch after batch, the statements a batch task
  runs (take a batch with ``FOR UPDATE SKIP LOCKED``, record the accepted
  keys, write the outcomes and the progress), without Celery or the gateway
  object;
* platform: ``broadcast_create`` commits, its kicks queue SMS_BATCH_CHAINS
  chains of batch tasks, and a notifications worker (prefork, --concurrency,
  as the Procfile's notifier) sends them; the clock runs from the commit to
  the broadcast's ``finished_at``.

Printed: messages/s of each, the ratio platform/bare (goal: at least 0.5),
and the verification: every player's message sent once, one gateway
message each, the progress finished. Anything else makes the run invalid
(exit 1).

Run from the project root:  .venv/bin/python bench/broadcast.py [--help]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database
lottery_bench_broadcast and flushes Redis database 14 (BENCH_REDIS_URL sets
another), the Celery broker here.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

import _common

DB_NAME = "lottery_bench_broadcast"
_common.REDIS_URL = os.environ.get("BENCH_REDIS_URL", _common.REDIS_URL)
ZERO_LATENCY = {
    "SMS_LATENCY_MIN_MS": "0",
    "SMS_LATENCY_MAX_MS": "0",
    "SMS_BATCH_LATENCY_MIN_MS": "0",
    "SMS_BATCH_LATENCY_MAX_MS": "0",
    "SMS_FAILURE_RATE": "0",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="SMS_BROADCAST_BATCH")
    parser.add_argument("--chains", type=int, default=3, help="SMS_BATCH_CHAINS (the setting's default)")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's processes")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(
        f"broadcast: {args.players:,} players, batches of {args.batch}, {args.chains} chains, "
        f"a worker of {args.concurrency} processes; simulated gateway at zero latency",
        flush=True,
    )
    os.environ.update(ZERO_LATENCY)
    os.environ["SMS_BROADCAST_BATCH"] = str(args.batch)
    os.environ["SMS_BATCH_CHAINS"] = str(args.chains)
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


def run(args: argparse.Namespace) -> int:
    from django.utils import timezone

    from core.db import copy_rows
    from entries.models import Player
    from lifecycle.services import lottery_open

    started = time.perf_counter()
    copy_rows(
        Player,
        [{"username": f"fan-{i:07d}", "password": "!", "phone_number": f"+1557{i:07d}"} for i in range(args.players)],
    )
    _common.step(f"{args.players:,} players written ({time.perf_counter() - started:.1f} s)")
    now = timezone.now()
    drops = [
        lottery_open(kind="drop", title=f"Benchmark drop {n}", day=now.date(), opens_at=now,
                     closes_at=now + timedelta(hours=1), prize="Benchmark prize")
        for n in (1, 2)
    ]  # fmt: skip

    bare = bare_loop(drops[0].pk)
    _common.flush_redis()  # the first broadcast's kicks: no worker is meant to run them
    platform = through_workers(drops[1].pk, args)

    print("results")
    print(f"  bare      the batch statements in a loop:  {bare:>9,.0f} messages/s")
    print(f"  platform  Celery worker, {args.chains} chains:     {platform:>9,.0f} messages/s"
          f"   = {platform / bare:.2f} x bare   (goal: at least 0.5)")  # fmt: skip
    ok = verify(drops, args.players)
    _common.summary(
        "broadcast",
        valid=ok,
        figures={"platform_messages_per_s": round(platform), "bare_messages_per_s": round(bare)},
        ratios={"platform/bare": round(platform / bare, 2)},
        goals={"platform/bare >= 0.5": platform / bare >= 0.5},
    )
    return 0 if ok else 1


def create(lottery_id: int) -> float:
    """The broadcast to every player, committed; returns the monotonic time of the commit."""
    from django.db import transaction
    from django.utils import timezone

    from entries.models import Player
    from lotteries.models import Lottery
    from notifications.services import broadcast_create

    started = time.perf_counter()
    with transaction.atomic():
        broadcast_create(
            lottery=Lottery.objects.get(pk=lottery_id), players=Player.objects.all(), body="Bench", now=timezone.now()
        )
    committed = time.monotonic()
    _common.step(f"broadcast of lottery {lottery_id} written ({time.perf_counter() - started:.1f} s)")
    return committed


def bare_loop(lottery_id: int) -> float:
    from django.conf import settings
    from django.utils import timezone

    from notifications import gateway
    from notifications.services import _TAKE_BATCH_SQL, _finish, _take

    create(lottery_id)
    sent = 0
    started = time.monotonic()
    while True:
        params = {"lottery": lottery_id, "kind": "broadcast", "limit": settings.SMS_BROADCAST_BATCH}
        taken = _take(_TAKE_BATCH_SQL, params, timezone.now())
        if not taken:
            break
        accepted = gateway._accept("simulated", [message.sms for message in taken])
        results = [gateway.SendResult(str(accepted[m.sms.idempotency_key]), 0) for m in taken]
        sent += _finish(taken, results).sent
    elapsed = time.monotonic() - started
    _common.step(f"bare: {sent:,} sent in {elapsed:.2f} s")
    return sent / elapsed


def start_worker(db_name: str, concurrency: int) -> tuple[subprocess.Popen[bytes], Any]:
    """A notifications worker (prefork) on the benchmark's database, once it says it is ready."""
    env = {**os.environ, **_common.bench_env(db_name), **ZERO_LATENCY, "LOG_LEVEL": "WARNING"}
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by stop_worker)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "lottery_site", "worker", "--queues", "notifications",
         "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
         "--without-mingle", "--without-gossip"],
        cwd=_common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    from lottery_site.celery import app

    # Ready once it answers a ping: its log says so only at INFO, and the benchmark keeps it at WARNING.
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            output = os.pread(log.fileno(), 1 << 20, 0).decode(errors="replace")
            stop_worker(worker, log)
            raise RuntimeError("the worker did not start:\n" + output)
    return worker, log


def stop_worker(worker: subprocess.Popen[bytes], log: Any) -> None:
    worker.terminate()
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)
    log.close()


def through_workers(lottery_id: int, args: argparse.Namespace) -> float:
    from notifications.models import Broadcast

    worker, log = start_worker(DB_NAME, args.concurrency)
    try:
        committed = create(lottery_id)
        deadline = time.monotonic() + 600
        while (broadcast := Broadcast.objects.get(pk=lottery_id)).finished_at is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broadcast did not finish: {broadcast.remaining:,} remaining")
            time.sleep(0.02)
        elapsed = time.monotonic() - committed
    finally:
        stop_worker(worker, log)
    _common.step(f"platform: {broadcast.sent:,} sent in {elapsed:.2f} s")
    return broadcast.sent / elapsed


def verify(drops: list, players: int) -> bool:
    from django.db.models import Count

    from notifications.models import Broadcast, GatewayMessage, Notification

    ok = True
    for drop in drops:
        broadcast = Broadcast.objects.get(pk=drop.pk)
        states = dict(Notification.objects.filter(lottery=drop).values_list("state").annotate(n=Count("id")).order_by())
        good = states == {"sent": players} and (broadcast.sent, broadcast.failed) == (players, 0)
        ok &= good
        print(f"  verify    lottery {drop.pk}: states {states}, progress sent {broadcast.sent:,} "
              f"failed {broadcast.failed:,}: {'ok' if good else 'INVALID'}")  # fmt: skip
    at_gateway = GatewayMessage.objects.count()
    ok &= at_gateway == 2 * players
    print(f"  verify    gateway messages {at_gateway:,} (expected {2 * players:,}): {'ok' if ok else 'INVALID'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
