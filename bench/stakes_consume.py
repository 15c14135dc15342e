"""Stake consumer throughput: stakes applied per second from player.v1.staked, beside a bare consumer.

Starts a Tansu broker (memory storage) on a free port and a throw-away
database, produces 10,000 player.stakeCreated messages to STAKES_TOPIC (10,000
distinct players over 100 games, EUR; not timed), then reads them twice, one
after the other, in the same run and from the same broker:

* baseline: a bare kafka-python ``KafkaConsumer`` with the settings that
  ``pools.consumer.consume`` gives its own (captured from it, no file
  changed), in a group of its own, committing each poll's offsets as
  ``consume`` does and counting records: from the first poll that returns
  records to the one that brings the 10,000th;
* platform: ``manage.py consume_stakes`` as a subprocess, in its own group
  (STAKES_CONSUMER_GROUP), from its first applied batch (the inbox's
  ``received_at``: PostgreSQL's ``now()``, the start of the batch's
  transaction) to the moment the counters reach 10,000 received (the database
  is watched every 10 ms; applied is checked after); its ratio to the baseline
  (goal: at least 0.25).

Both leave out the group join (about 3 s on Tansu with session_timeout_ms=6000).
Afterwards: exactly 10,000 stakes stored and 10,000 players, counters received
== applied == 10,000 (nothing duplicate or dead-lettered), pools of POOL_SIZE
distinct players (3,333 closed + 1 open for 10,000 stakes and pools of 3), the
pots summing to the stakes, every closed pool queued for a draw. Anything else
makes the run invalid (exit 1).

Run from the project root:  .venv/bin/python bench/stakes_consume.py [--help]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database
lottery_bench_stakes and flushes Redis database 14 (full pools queue their
draw tasks there; no worker runs).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import _common
import _kafka

DB_NAME = "lottery_bench_stakes"
BARE_GROUP = "bench-bare-stakes"
AMOUNTS = ("5.00", "2.50", "10.00", "1.00", "20.00")
CURRENCY = "EUR"
WATCH_INTERVAL = 0.01  # seconds between two looks at the counters


@dataclass
class Phase:
    """One timed read of the stakes, and what was found wrong with it."""

    name: str
    records: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def describe(self) -> str:
        return f"{self.records:,} stakes in {self.seconds * 1000:.1f} ms"


@dataclass(frozen=True)
class Stake:
    stake_id: str
    player_id: str
    game_id: str
    amount: str
    value: bytes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stakes", type=int, default=10_000, help="stakes produced, each by a distinct player")
    parser.add_argument("--games", type=int, default=100, help="distinct gameIds (one open pool each at a time)")
    parser.add_argument(
        "--log-level", help="LOG_LEVEL of the consume_stakes process (default: the application's, INFO)"
    )
    parser.add_argument("--time-limit", type=int, default=600, help="seconds before the run gives up")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(f"stakes_consume: {args.stakes:,} stakes over {args.games} games ({CURRENCY}), each player once", flush=True)

    with _kafka.bench_environment(DB_NAME, prefix="bench-stakes-", time_limit=args.time_limit) as (broker, tmp):
        return run(args, broker, tmp)


def run(args: argparse.Namespace, broker: _kafka.Broker, tmp: Path) -> int:
    from django.conf import settings

    from outbox import kafka
    from outbox.events import TOPICS

    started = time.perf_counter()
    _common.migrate()
    topics = [*TOPICS, settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC]
    kafka.ensure_topics(topics)  # as consume_stakes does at start
    _common.step(
        f"database {DB_NAME} migrated, topics created ({settings.KAFKA_TOPIC_PARTITIONS} partitions; "
        f"{time.perf_counter() - started:.1f} s)"
    )
    stakes = make_stakes(args.stakes, args.games)
    seconds = produce(broker.bootstrap, settings.STAKES_TOPIC, stakes)
    sizes = [len(s.value) for s in stakes]
    _common.step(
        f"{len(stakes):,} stakes produced to {settings.STAKES_TOPIC} in {seconds:.1f} s, keyed by playerId "
        f"(values {min(sizes)}-{max(sizes)} bytes, mean {statistics.mean(sizes):.0f})"
    )
    config = consumer_settings()
    _common.step(
        f"consumer settings (consume()'s; the bare one copies all but group_id and client_id): {format_config(config)}"
    )

    bare = measure_bare(broker.bootstrap, settings.STAKES_TOPIC, config, stakes)
    _common.step(f"bare    : {bare.describe()}")
    platform = measure_command(broker.bootstrap, len(stakes), args.log_level, tmp)
    _common.step(f"platform: {platform.describe()}")
    platform.problems += check_database(stakes)
    platform.notes.append(rows_written(len(stakes)))

    print("results")
    print(f"  baseline  bare KafkaConsumer, group {BARE_GROUP}: {bare.rate:8.0f} stakes/s  ({bare.describe()})")
    print(
        f"  platform  manage.py consume_stakes, group {settings.STAKES_CONSUMER_GROUP}: {platform.rate:8.0f} "
        f"stakes/s  ({platform.describe()})"
    )
    print(f"  ratio     platform/bare: {platform.rate / bare.rate:.3f}   (goal: at least 0.25)")
    for phase in (bare, platform):
        for note in phase.notes:
            print(f"  {phase.name:<9} {note}")
    problems = [f"{p.name}: {problem}" for p in (bare, platform) for problem in p.problems]
    for problem in problems:
        print(f"  !! INVALID: {problem}")
    if not problems:
        print(
            f"  checks    ok: each stake read once by the baseline; {len(stakes):,} stakes stored, counted "
            "received == applied, pooled as expected, every closed pool queued for a draw"
        )
    _common.summary(
        "stakes_consume",
        valid=not problems,
        figures={"platform_stakes_per_s": round(platform.rate), "bare_read_stakes_per_s": round(bare.rate)},
        ratios={"platform/bare_read": round(platform.rate / bare.rate, 3)},
        goals={"platform/bare_read >= 0.25": platform.rate / bare.rate >= 0.25},
    )
    return 1 if problems else 0


# --- Stakes ------------------------------------------------------------------------


def make_stakes(count: int, games: int) -> list[Stake]:
    """``count`` stakes by distinct players; consecutive runs of POOL_SIZE stakes go to the games in turn."""
    from django.conf import settings

    size = settings.POOL_SIZE
    start = datetime.now(UTC) - timedelta(minutes=5)
    stakes = []
    for i in range(count):
        stake = {
            "stakeId": f"bench-stake-{i:07d}",
            "playerId": f"bench-player-{i:07d}",
            "gameId": f"bench-game-{(i // size) % games:04d}",
            "amount": AMOUNTS[i % len(AMOUNTS)],
            "currency": CURRENCY,
            "occurredAt": (start + timedelta(milliseconds=i)).isoformat(),
        }
        value = json.dumps(stake, separators=(",", ":")).encode()
        stakes.append(Stake(stake["stakeId"], stake["playerId"], stake["gameId"], stake["amount"], value))
    return stakes


def expected_pools(stakes: list[Stake]) -> Counter[tuple[str, int]]:
    """(state, stakes in the pool) -> pools: every player distinct, so each POOL_SIZE stakes of a game fill one."""
    from django.conf import settings

    size = settings.POOL_SIZE
    pools: Counter[tuple[str, int]] = Counter()
    for count in Counter(s.game_id for s in stakes).values():
        pools[("closed", size)] += count // size
        if count % size:
            pools[("open", count % size)] += 1
    return +pools


def produce(bootstrap: str, topic: str, stakes: list[Stake]) -> float:
    from kafka import KafkaProducer

    from pools.stake_messages import MESSAGE_TYPE

    started = time.perf_counter()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-stakes-producer", acks="all", linger_ms=5, batch_size=256 * 1024
    )
    try:
        headers = [("messageType", MESSAGE_TYPE.encode()), ("content-type", b"application/json")]
        futures = [producer.send(topic, key=s.player_id.encode(), value=s.value, headers=headers) for s in stakes]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=0)
    finally:
        producer.close(timeout=5)
    return time.perf_counter() - started


# --- The bare consumer ----------------------------------------------------------------


class _Captured(Exception):
    pass


def consumer_settings() -> dict[str, Any]:
    """The keyword arguments ``consume()`` gives its KafkaConsumer, captured in memory (no consumer is built)."""
    from pools import consumer as stake_consumer

    captured: dict[str, Any] = {}

    def capture(*topics: str, **kwargs: Any) -> None:
        captured.update(kwargs)
        raise _Captured

    original, stake_consumer.KafkaConsumer = stake_consumer.KafkaConsumer, capture  # type: ignore[assignment]
    try:
        stake_consumer.consume(should_stop=lambda: True)
    except _Captured:
        pass
    finally:
        stake_consumer.KafkaConsumer = original  # type: ignore[misc]
    if not captured:
        raise RuntimeError("consume() built no KafkaConsumer: update consumer_settings()")
    return captured


def measure_bare(bootstrap: str, topic: str, config: dict[str, Any], stakes: list[Stake]) -> Phase:
    """Poll, count, commit the poll's offsets (as consume() does), until every stake was read."""
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    expect = len(stakes)
    settings = {**config, "bootstrap_servers": bootstrap, "group_id": BARE_GROUP, "client_id": BARE_GROUP}
    created = time.perf_counter()
    consumer = KafkaConsumer(topic, **settings)
    read: list[tuple[int, int, bytes]] = []
    polls = 0
    first = last = 0.0
    try:
        deadline = time.perf_counter() + 120
        while len(read) < expect and time.perf_counter() < deadline:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                continue
            if not first:
                first = time.perf_counter()
            polls += 1
            for records in polled.values():
                read.extend((r.partition, r.offset, r.key) for r in records)
            consumer.commit(
                {
                    TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    for tp, records in polled.items()
                }
            )
            last = time.perf_counter()
        extra = sum(len(records) for records in consumer.poll(timeout_ms=1000).values())  # anything beyond?
    finally:
        consumer.close(autocommit=False)
    if not first:
        raise RuntimeError("the bare consumer read nothing in 120 s")
    phase = Phase("bare", len(read), last - first)
    phase.notes.append(
        f"group joined and first records after {first - created:.2f} s (not timed); {polls} polls "
        f"(mean {len(read) / polls:.0f} records), offsets committed after each"
    )
    keys = Counter(key for _, _, key in read)
    coordinates = {(partition, offset) for partition, offset, _ in read}
    expected = {s.player_id.encode() for s in stakes}
    if len(read) != expect or extra or len(coordinates) != len(read) or set(keys) != expected:
        phase.problems.append(
            f"read {len(read):,} records (+{extra} after), {len(coordinates):,} distinct offsets, "
            f"{len(set(keys) & expected):,} of the {expect:,} playerIds"
        )
    return phase


# --- The platform's consumer ---------------------------------------------------------


def counters() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(received), 0), coalesce(sum(applied), 0) FROM outbox_consumercounter "
            "WHERE consumer = %s",
            ["stakes"],
        )
        received, applied = cursor.fetchone()
    return int(received), int(applied)


def first_batch_started() -> float:
    """When the first batch's transaction began (the inbox rows' received_at is its now()), as a Unix time."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM min(received_at)) FROM outbox_inboxmessage WHERE consumer = %s", ["stakes"]
        )
        return float(cursor.fetchone()[0])


def measure_command(bootstrap: str, expect: int, log_level: str | None, tmp: Path) -> Phase:
    """``manage.py consume_stakes`` as a subprocess, from its first batch to its last, watched in the database."""
    env = {**os.environ, **_common.bench_env(DB_NAME), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    env.pop("LOG_LEVEL", None)  # the command logs as it would in production, unless --log-level
    if log_level:
        env["LOG_LEVEL"] = log_level
    out_path, log_path = tmp / "consume_stakes.out", tmp / "consume_stakes.log"
    command = [sys.executable, "manage.py", "consume_stakes"]
    with out_path.open("wb") as out, log_path.open("wb") as log:
        launched = time.time()
        process = subprocess.Popen(command, cwd=_common.ROOT, env=env, stdout=out, stderr=log)
        try:
            done_at = watch(process, expect, log_path)
        finally:
            process.send_signal(signal.SIGTERM)  # finishes the batch in hand, commits it, leaves the group
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    started_at = first_batch_started()
    phase = Phase("platform", counters()[1], done_at - started_at)  # the stakes applied
    batches = [line for line in out_path.read_text().splitlines() if line.startswith("received ")]
    sizes = [int(line.split()[1].rstrip(",")) for line in batches]
    log_lines = len(log_path.read_text().splitlines())
    phase.notes.append(
        f"process start and group join took {started_at - launched:.2f} s (not timed); {len(batches)} batches "
        f"(records per batch: min {min(sizes, default=0)}, median {statistics.median(sizes or [0]):.0f}, "
        f"max {max(sizes, default=0)}), {phase.seconds / max(len(batches), 1) * 1000:.1f} ms per batch"
    )
    phase.notes.append(
        f"logging: {'LOG_LEVEL=' + log_level if log_level else 'the application default (INFO)'}, "
        f"{log_lines:,} lines on stderr"
    )
    if code != 0:
        phase.problems.append(f"consume_stakes exited with {code} after SIGTERM: see {log_path}")
    return phase


def watch(process: subprocess.Popen[bytes], expect: int, log_path: Path) -> float:
    """Look at the counters every 10 ms until ``expect`` records are handled; returns that moment (Unix time).

    Received, not applied: a duplicate or a dead letter ends the wait too, and the checks report it.
    """
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"consume_stakes exited with {process.returncode}: see {log_path}")
        received, _ = counters()
        if received >= expect:
            return time.time()
        time.sleep(WATCH_INTERVAL)
    raise RuntimeError(f"consume_stakes handled {counters()[0]:,} of {expect:,} stakes in 300 s")


# --- Checks ------------------------------------------------------------------------


def check_database(stakes: list[Stake]) -> list[str]:
    """What the consumer left behind must be exactly the stakes, pooled; returns the problems found."""
    from django.db.models import Count, Q, Sum

    from entries.models import Ballot, Player
    from lotteries.models import Lottery
    from outbox.inbox import counters_total
    from outbox.models import DeadLetter
    from pools.consumer import CONSUMER
    from pools.models import Stake as StoredStake

    problems = []
    expect = len(stakes)
    stored = set(StoredStake.objects.values_list("stake_id", flat=True))
    if len(stored) != expect or stored != {s.stake_id for s in stakes}:
        problems.append(f"{len(stored):,} stakes stored, {len(stored & {s.stake_id for s in stakes}):,} of ours")
    totals = counters_total(consumer=CONSUMER)
    if (totals["received"], totals["applied"], totals["duplicate"], totals["dead_lettered"]) != (expect, expect, 0, 0):
        problems.append(f"counters {dict(totals)}, expected received == applied == {expect:,}")
    dead = DeadLetter.objects.count()
    if dead:
        problems.append(f"{dead} dead letters")
    players = Player.objects.filter(username__startswith="ext-bench-player-").count()
    if players != expect:
        problems.append(f"{players:,} players created, expected {expect:,}")

    pools = Lottery.objects.filter(kind=Lottery.Kind.POOL).annotate(
        stakes_in=Count("stakes", distinct=True),
        players_in=Count("ballots", filter=Q(ballots__status=Ballot.Status.VALID), distinct=True),
    )
    found: Counter[tuple[str, int]] = Counter()
    for state, stakes_in, players_in in pools.values_list("state", "stakes_in", "players_in"):
        found[(state, stakes_in)] += 1
        if players_in != stakes_in:
            problems.append(f"a {state} pool of {stakes_in} stakes has {players_in} players")
    expected = expected_pools(stakes)
    if found != expected:
        problems.append(f"pools (state, stakes): {describe_pools(found)}, expected {describe_pools(expected)}")
    else:
        _common.step(f"pools as expected: {describe_pools(found)}")
    pot = Lottery.objects.filter(kind=Lottery.Kind.POOL).aggregate(pot=Sum("pot"))["pot"] or Decimal(0)
    staked = sum(Decimal(s.amount) for s in stakes)
    if pot != staked:
        problems.append(f"pots sum to {pot}, the stakes to {staked}")
    draws = queued_draws()
    if draws != sum(n for (state, _), n in expected.items() if state == "closed"):
        problems.append(f"{draws:,} pools queued for a draw in Redis, expected every closed pool")
    return problems


def rows_written(stakes: int) -> str:
    """The rows the consumer left in each table it writes, per stake: its work, independent of timing."""
    from django.db import connection

    tables = (
        "outbox_inboxmessage",
        "entries_player",
        "entries_stake",
        "entries_ballot",
        "lotteries_lottery",
        "draws_lotteryseed",
        "lotteries_lotterytransition",
        "outbox_outboxevent",
    )
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables))
        counts = cursor.fetchall()
    total = sum(n for _, n in counts)
    listed = ", ".join(f"{table.split('_', 1)[1]} {n:,}" for table, n in counts)
    return f"rows written: {total:,} ({total / stakes:.1f} per stake): {listed}"


def describe_pools(pools: Counter[tuple[str, int]]) -> str:
    return ", ".join(f"{n:,} {state} of {size}" for (state, size), n in sorted(pools.items()))


def queued_draws() -> int:
    """Pools queued for a draw in Redis (the Celery broker; no worker runs): one draw_lotteries task per batch."""
    import base64

    from redis import Redis

    client = Redis.from_url(_common.REDIS_URL)
    try:
        messages = [json.loads(m) for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    pools = 0
    for message in messages:
        if message["headers"]["task"] == "lifecycle.tasks.draw_lotteries":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            pools += len(args[0])
    return pools


def format_config(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(", ", "="), default=str).strip("{}").replace('"', "")


if __name__ == "__main__":
    sys.exit(main())
