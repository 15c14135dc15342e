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

* durable baseline: the floor of the durable work. A bare ``KafkaConsumer``
  (same settings, a group of its own) that, per poll, COPYs as many stakes'
  worth of the rows the platform wrote (inbox, player, stake, ballot, pools
  with their seeds and transitions, outbox events: precomputed, dumped from
  the platform's own run and the tables then emptied) in one transaction,
  commits, then commits the poll's offsets. No parsing, no planning, no
  lookups: what is left of the platform's cost over it is the code's. The
  platform's ratio to it (goal: at least 0.6); the ratio to the bare read is
  kept for continuity (old goal 0.25);
* two ``consume_stakes`` processes in one group over the topic's 6
  partitions, into the emptied tables: on 2 cores this shows that the group
  shares the work correctly without collapsing, not linear scaling (the two
  processes and PostgreSQL share the same two cores).

All leave out the group join (about 3 s on Tansu with session_timeout_ms=6000).
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
DURABLE_GROUP = "bench-durable-stakes"
PAIR_GROUP = "bench-two-consumers"
PARTITIONS = 6  # the topics' partitions in this run: room for two consumers in one group
DURABLE_GOAL = 0.6  # platform/durable baseline
# The tables a batch of stakes writes, parents first (their foreign keys are checked at each commit).
DURABLE_TABLES = (
    "lotteries_lottery",
    "draws_lotteryseed",
    "lotteries_lotterytransition",
    "entries_player",
    "entries_ballot",
    "entries_stake",
    "outbox_inboxmessage",
    "outbox_outboxevent",
)


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

    os.environ["KAFKA_TOPIC_PARTITIONS"] = str(PARTITIONS)  # this process's settings and the commands' alike
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
    rows = DurableRows.dump()
    empty_tables()
    durable = measure_durable(broker.bootstrap, settings.STAKES_TOPIC, config, rows, len(stakes))
    _common.step(f"durable : {durable.describe()}")
    empty_tables()
    pair = measure_command(broker.bootstrap, len(stakes), args.log_level, tmp, processes=2, group=PAIR_GROUP)
    _common.step(f"two     : {pair.describe()}")
    pair.problems += check_database(stakes)

    print("results")
    print(f"  baseline  bare KafkaConsumer, group {BARE_GROUP}: {bare.rate:8.0f} stakes/s  ({bare.describe()})")
    print(
        f"  platform  manage.py consume_stakes, group {settings.STAKES_CONSUMER_GROUP}: {platform.rate:8.0f} "
        f"stakes/s  ({platform.describe()})"
    )
    print(f"  baseline  durable intake (bare consumer + COPY of the same rows): {durable.rate:8.0f} stakes/s  "
          f"({durable.describe()})")  # fmt: skip
    print(f"  two       2 x consume_stakes, one group, {PARTITIONS} partitions: {pair.rate:8.0f} stakes/s  "
          f"({pair.describe()}; {pair.rate / platform.rate:.2f} x one process)")  # fmt: skip
    print(f"  ratio     platform/durable: {platform.rate / durable.rate:.3f}   (goal: at least {DURABLE_GOAL})")
    print(f"  ratio     platform/bare read: {platform.rate / bare.rate:.3f}   (old goal: at least 0.25)")
    phases = (bare, platform, durable, pair)
    for phase in phases:
        for note in phase.notes:
            print(f"  {phase.name:<9} {note}")
    problems = [f"{p.name}: {problem}" for p in phases for problem in p.problems]
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
        figures={
            "platform_stakes_per_s": round(platform.rate),
            "durable_baseline_stakes_per_s": round(durable.rate),
            "bare_read_stakes_per_s": round(bare.rate),
            "two_processes_stakes_per_s": round(pair.rate),
        },
        ratios={
            "platform/durable": round(platform.rate / durable.rate, 3),
            "platform/bare_read": round(platform.rate / bare.rate, 3),
            "two/one process": round(pair.rate / platform.rate, 2),
        },
        goals={f"platform/durable >= {DURABLE_GOAL}": platform.rate / durable.rate >= DURABLE_GOAL},
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


# --- The durable-intake baseline ----------------------------------------------------


@dataclass
class DurableRows:
    """The rows the platform wrote for the stakes, as COPY text lines, and how they hang together.

    A slice of n stakes takes those stakes' players, ballots and stake rows, the
    pools (with seeds and transitions) they need that no earlier slice wrote,
    n inbox rows and its share of the outbox events: the same rows, written in
    the same number of transactions as the baseline's polls.
    """

    lines: dict[str, list[bytes]]
    stakes: list[tuple[int, int, int]]  # per stake row, in id order: (its line, player line, ballot line)
    lottery_of_stake: list[int]
    lottery_lines: dict[int, tuple[int, int | None, list[int]]]  # lottery id -> (its line, seed line, transitions)

    @classmethod
    def dump(cls) -> "DurableRows":
        from django.db import connection

        lines: dict[str, list[bytes]] = {}
        with connection.cursor() as cursor:
            raw = cursor.cursor
            for table in DURABLE_TABLES:
                key = "lottery_id" if table == "draws_lotteryseed" else "id"
                with raw.copy(f"COPY (SELECT * FROM {table} ORDER BY {key}) TO STDOUT") as copy:
                    lines[table] = b"".join(bytes(chunk) for chunk in copy).splitlines(keepends=True)
            cursor.execute("SELECT id FROM entries_player ORDER BY id")
            player_line = {pk: n for n, (pk,) in enumerate(cursor.fetchall())}
            cursor.execute("SELECT id FROM entries_ballot ORDER BY id")
            ballot_line = {pk: n for n, (pk,) in enumerate(cursor.fetchall())}
            cursor.execute("SELECT player_id, ballot_id, lottery_id FROM entries_stake ORDER BY id")
            stake_rows = cursor.fetchall()
            cursor.execute("SELECT id FROM lotteries_lottery ORDER BY id")
            lottery_ids = [pk for (pk,) in cursor.fetchall()]
            cursor.execute("SELECT lottery_id FROM draws_lotteryseed ORDER BY lottery_id")
            seed_line = {pk: n for n, (pk,) in enumerate(cursor.fetchall())}
            cursor.execute("SELECT lottery_id FROM lotteries_lotterytransition ORDER BY id")
            transitions: dict[int, list[int]] = {}
            for n, (lottery_id,) in enumerate(cursor.fetchall()):
                transitions.setdefault(lottery_id, []).append(n)
        return cls(
            lines=lines,
            stakes=[(n, player_line[p], ballot_line[b]) for n, (p, b, _) in enumerate(stake_rows)],
            lottery_of_stake=[lottery for _, _, lottery in stake_rows],
            lottery_lines={pk: (n, seed_line.get(pk), transitions.get(pk, [])) for n, pk in enumerate(lottery_ids)},
        )

    def total_rows(self) -> int:
        return sum(len(lines) for lines in self.lines.values())


def measure_durable(bootstrap: str, topic: str, config: dict[str, Any], rows: DurableRows, expect: int) -> Phase:
    """Poll; COPY the next slice of the platform's rows in one transaction; commit; commit the offsets."""
    import psycopg
    from django.conf import settings as django_settings
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    database = django_settings.DATABASES["default"]
    conn = psycopg.connect(host=database["HOST"], port=database["PORT"], user=database["USER"], dbname=database["NAME"])
    settings = {**config, "bootstrap_servers": bootstrap, "group_id": DURABLE_GROUP, "client_id": DURABLE_GROUP}
    created = time.perf_counter()
    consumer = KafkaConsumer(topic, **settings)
    lines = rows.lines
    outbox_per_stake = len(lines["outbox_outboxevent"]) / len(rows.stakes)
    written_lotteries: set[int] = set()
    taken = outbox_taken = polls = 0
    first = last = 0.0
    try:
        deadline = time.perf_counter() + 120
        while taken < expect and time.perf_counter() < deadline:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                continue
            if not first:
                first = time.perf_counter()
            polls += 1
            count = sum(len(records) for records in polled.values())
            start, taken = taken, min(taken + count, len(rows.stakes))
            outbox_end = (
                len(lines["outbox_outboxevent"]) if taken == len(rows.stakes) else round(taken * outbox_per_stake)
            )
            batch: dict[str, list[bytes]] = {table: [] for table in DURABLE_TABLES}
            for n in range(start, taken):
                stake_line, player_line, ballot_line = rows.stakes[n]
                lottery = rows.lottery_of_stake[n]
                if lottery not in written_lotteries:
                    written_lotteries.add(lottery)
                    lottery_line, seed_line, transition_lines = rows.lottery_lines[lottery]
                    batch["lotteries_lottery"].append(lines["lotteries_lottery"][lottery_line])
                    if seed_line is not None:
                        batch["draws_lotteryseed"].append(lines["draws_lotteryseed"][seed_line])
                    batch["lotteries_lotterytransition"] += [
                        lines["lotteries_lotterytransition"][t] for t in transition_lines
                    ]
                batch["entries_player"].append(lines["entries_player"][player_line])
                batch["entries_ballot"].append(lines["entries_ballot"][ballot_line])
                batch["entries_stake"].append(lines["entries_stake"][stake_line])
            batch["outbox_inboxmessage"] = lines["outbox_inboxmessage"][start:taken]
            batch["outbox_outboxevent"] = lines["outbox_outboxevent"][outbox_taken:outbox_end]
            outbox_taken = outbox_end
            with conn.transaction(), conn.cursor() as cursor:
                for table, table_lines in batch.items():
                    if table_lines:
                        with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                            copy.write(b"".join(table_lines))
            consumer.commit(
                {
                    TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    for tp, records in polled.items()
                }
            )
            last = time.perf_counter()
    finally:
        consumer.close(autocommit=False)
        conn.close()
    if not first:
        raise RuntimeError("the durable baseline read nothing in 120 s")
    phase = Phase("durable", taken, last - first)
    phase.notes.append(
        f"group joined and first records after {first - created:.2f} s (not timed); {polls} polls, each one "
        f"transaction of COPYs, then its offsets committed; {rows.total_rows():,} rows, the platform's own"
    )
    stored = rows_stored()
    if stored != rows.total_rows():
        phase.problems.append(f"{stored:,} rows stored, the platform wrote {rows.total_rows():,}")
    return phase


def rows_stored() -> int:
    """The rows now in the durable tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(f"SELECT count(*) FROM {t}" for t in DURABLE_TABLES))
        return sum(n for (n,) in cursor.fetchall())


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


def empty_tables() -> None:
    """Empty what the consumer wrote (and what refers to it), and its counters: the next phase starts clean."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(DURABLE_TABLES)}, outbox_consumercounter CASCADE")
    _common.flush_redis()  # the draws the pools queued


def first_batch_started() -> float:
    """When the first batch's transaction began (the inbox rows' received_at is its now()), as a Unix time."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM min(received_at)) FROM outbox_inboxmessage WHERE consumer = %s", ["stakes"]
        )
        return float(cursor.fetchone()[0])


def batch_lines(log: Path) -> list[dict[str, Any]]:
    """A consumer process's "stake batch" log lines."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "stake batch"]


def measure_command(
    bootstrap: str, expect: int, log_level: str | None, tmp: Path, *, processes: int = 1, group: str | None = None
) -> Phase:
    """``manage.py consume_stakes`` processes in one group, first batch to last, watched in the database."""
    env = {**os.environ, **_common.bench_env(DB_NAME), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    env.pop("LOG_LEVEL", None)  # the command logs as it would in production, unless --log-level
    if log_level:
        env["LOG_LEVEL"] = log_level
    if group:
        env["STAKES_CONSUMER_GROUP"] = group
    name = "platform" if processes == 1 else "two"
    outs = [tmp / f"consume_stakes.{name}.{n}.out" for n in range(processes)]
    logs = [tmp / f"consume_stakes.{name}.{n}.log" for n in range(processes)]
    command = [sys.executable, "manage.py", "consume_stakes"]
    launched = time.time()
    running = [
        subprocess.Popen(command, cwd=_common.ROOT, env=env, stdout=out.open("wb"), stderr=log.open("wb"))
        for out, log in zip(outs, logs, strict=True)
    ]
    codes = []
    try:
        done_at = watch(running, expect, logs[0])
    finally:
        for process in running:
            process.send_signal(signal.SIGTERM)  # finishes the batch in hand, commits it, leaves the group
        for process in running:
            try:
                codes.append(process.wait(timeout=30))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
    started_at = first_batch_started()
    phase = Phase(name, counters()[1], done_at - started_at)  # the stakes applied
    # Their "stake batch" lines (INFO, JSON on stderr: core.logs): none with --log-level WARNING.
    per_log = [batch_lines(log) for log in logs]
    batches = [line for lines in per_log for line in lines]
    sizes = [line["received"] for line in batches]
    log_lines = sum(len(log.read_text().splitlines()) for log in logs)
    if processes > 1:
        per_process = [len(lines) for lines in per_log]
        phase.notes.append(f"batches per process: {per_process} (both took part)" if all(per_process) else
                           f"batches per process: {per_process}: one process did no work")  # fmt: skip
        if not all(per_process):
            phase.problems.append(f"a process of the group applied nothing: batches per process {per_process}")
    phase.notes.append(
        f"process start and group join took {started_at - launched:.2f} s (not timed); {len(batches)} batches "
        f"(records per batch: min {min(sizes, default=0)}, median {statistics.median(sizes or [0]):.0f}, "
        f"max {max(sizes, default=0)}), {phase.seconds / max(len(batches), 1) * 1000:.1f} ms per batch"
    )
    phase.notes.append(
        f"logging: {'LOG_LEVEL=' + log_level if log_level else 'the application default (INFO)'}, "
        f"{log_lines:,} lines on stderr"
    )
    if any(codes):
        phase.problems.append(f"consume_stakes exited with {codes} after SIGTERM: see {logs}")
    return phase


def watch(processes: list[subprocess.Popen[bytes]], expect: int, log_path: Path) -> float:
    """Look at the counters every 10 ms until ``expect`` records are handled; returns that moment (Unix time).

    Received, not applied: a duplicate or a dead letter ends the wait too, and the checks report it.
    """
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for process in processes:
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
