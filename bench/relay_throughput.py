"""Outbox relay throughput: committed outbox rows to broker acknowledgements, beside a bare producer.

Starts a Tansu broker (memory storage) on a free port and a throw-away
database, stores 20,000 LotteryEntryCreated events across 200 keys with
``outbox.services.publish`` (transactions of 500; not timed), then measures,
in the same run and against the same broker:

* baseline: a bare kafka-python ``KafkaProducer`` with the relay producer's
  settings sending the same 20,000 records (keys, values, headers) to a topic
  of its own with as many partitions, then ``flush()``;
* relay: ``outbox.relay.drain`` in this process, from the first claim to the
  last batch's commit; its ratio to the baseline (goal: at least 0.75);
* bound: the relay's durable work alone, with psycopg and a producer of the
  same settings and no Django: per batch, claim (``FOR UPDATE SKIP LOCKED``),
  send, flush, mark, commit. No relay doing that work gets above it here, so
  bound/bare says whether the 0.75 goal is reachable, and relay/bound what the
  relay's own code costs (goal: at least 0.9);
* a breakdown of the relay's time per batch phase (SQL statements, sends,
  flush), from an extra instrumented drain;
* ``manage.py relay_outbox --once`` as a subprocess (process start included,
  and beside the same command on an empty outbox).

Every phase is verified by reading back what it added to its topic (a reader
follows each topic from its start): each event exactly once, and each key's
events in order. A missing or extra record makes the run invalid (exit 1).

Run from the project root:  .venv/bin/python bench/relay_throughput.py [--help]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database
lottery_bench_relay and flushes Redis database 14 (kicks queue Celery tasks
there; no worker runs).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import _common
import _kafka

DB_NAME = "lottery_bench_relay"
BARE_TOPIC = "bench.bare.entry"
FIRST_LOTTERY_ID = 41_000
GOAL = 0.75  # relay/bare
BOUND_GOAL = 0.9  # relay/bound: where 0.75 of the bare producer lies above the bound, the aim is the bound


@dataclass
class Phase:
    """One timed publication of a set of events, and its verification."""

    name: str
    events: int
    seconds: float
    missing: int = 0
    extra: int = 0
    out_of_order: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def valid(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.out_of_order == 0

    def describe(self) -> str:
        check = "ok" if self.valid else f"missing {self.missing}, extra {self.extra}, out of order {self.out_of_order}"
        return f"{self.events:,} events in {self.seconds * 1000:8.1f} ms = {self.rate:8.0f} events/s  [{check}]"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per measured publication")
    parser.add_argument("--keys", type=int, default=200, help="distinct aggregate ids (lotteries)")
    parser.add_argument("--per-transaction", type=int, default=500, help="events per publish() transaction")
    parser.add_argument("--rounds", type=int, default=4, help="baseline, relay and bound measurements, alternating")
    parser.add_argument("--warmup", type=int, default=500, help="events sent by each producer before measuring")
    parser.add_argument("--no-command", action="store_true", help="skip the relay_outbox --once subprocess")
    parser.add_argument("--time-limit", type=int, default=600, help="seconds before the run gives up")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(
        f"relay_throughput: {args.events:,} events across {args.keys} keys, stored {args.per_transaction} per "
        f"transaction; {args.rounds} round(s)",
        flush=True,
    )

    with _kafka.bench_environment(DB_NAME, prefix="bench-relay-", time_limit=args.time_limit) as (broker, tmp):
        return run(args, broker, tmp)


def run(args: argparse.Namespace, broker: _kafka.Broker, tmp: Path) -> int:
    from django.conf import settings
    from kafka import KafkaProducer

    from outbox import kafka
    from outbox.events import ENTRY_TOPIC, TOPICS

    started = time.perf_counter()
    _common.migrate()
    kafka.ensure_topics(TOPICS)
    _kafka.create_topic(broker.bootstrap, BARE_TOPIC, settings.KAFKA_TOPIC_PARTITIONS)
    _common.step(
        f"database {DB_NAME} migrated, topics {', '.join([*TOPICS, BARE_TOPIC])} created "
        f"({settings.KAFKA_TOPIC_PARTITIONS} partitions; {time.perf_counter() - started:.1f} s)"
    )
    events = EventSource(args.keys)

    # Both producers connect, fetch metadata and get their producer ids before anything is timed.
    relay_producer = kafka.producer()
    producer_config = _kafka.producer_settings(relay_producer)
    bare = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="bench-bare", **producer_config)
    bound = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="bench-bound", **producer_config)
    _common.step(f"producer settings (relay's, copied by the bare one): {format_config(producer_config)}")
    readers = {topic: _kafka.TopicReader(broker.bootstrap, topic) for topic in (BARE_TOPIC, ENTRY_TOPIC)}
    try:
        store(events.take(args.warmup), args.per_transaction)
        warm = pending_records()
        send_bare(bare, warm)
        drain_all()
        for reader in readers.values():
            reader.read_new(expect=len(warm))
        _common.step(f"warm-up: {args.warmup} events through each producer")

        store(events.take(args.warmup), args.per_transaction)
        measure_bound(bound, pending_records(), readers[ENTRY_TOPIC])
        _common.step(f"warm-up: {args.warmup} events through the bound's producer")

        phases: dict[str, list[Phase]] = {"bare": [], "relay": [], "bound": []}
        for round_number in range(1, args.rounds + 1):
            stored = store(events.take(args.events), args.per_transaction)
            records = pending_records()
            sizes = [len(r.value) for r in records]
            _common.step(
                f"round {round_number}: {len(records):,} events stored in {stored:.1f} s "
                f"(values {min(sizes)}-{max(sizes)} bytes, mean {statistics.mean(sizes):.0f})"
            )
            order = ("bare", "relay", "bound") if round_number % 2 else ("bound", "relay", "bare")
            for which in order:
                if which == "bare":
                    phase = measure_bare(bare, records, readers[BARE_TOPIC])
                else:
                    if not pending_count():  # the other outbox phase of this round took the stored rows
                        store(events.take(args.events), args.per_transaction)
                    outbound = pending_records()
                    if which == "relay":
                        phase = measure_relay(outbound, readers[ENTRY_TOPIC])
                    else:
                        phase = measure_bound(bound, outbound, readers[ENTRY_TOPIC])
                phases[which].append(phase)
                _common.step(f"round {round_number} {phase.name:<5}: {phase.describe()}; {'; '.join(phase.notes)}")
        breakdown = profile_relay(events.take(args.events), args.per_transaction, readers[ENTRY_TOPIC])
        command = None
        if not args.no_command:
            command = measure_command(
                events.take(args.events), args.per_transaction, readers[ENTRY_TOPIC], broker.bootstrap, tmp
            )
    finally:
        bare.close(timeout=5)
        bound.close(timeout=5)
        for reader in readers.values():
            reader.close()

    rates = {which: statistics.median(p.rate for p in done) for which, done in phases.items()}
    print("results")
    for which, label in (
        ("bare", "baseline  bare KafkaProducer"),
        ("bound", "bound     claim, send, mark (psycopg)"),
        ("relay", "relay     outbox.relay.drain"),
    ):
        each = ", ".join(f"{p.rate:.0f}" for p in phases[which])
        print(f"  {label}: {rates[which]:8.0f} events/s (median; rounds: {each})")
    ratio, bound_ratio = rates["relay"] / rates["bare"], rates["bound"] / rates["bare"]
    print(f"  ratio     relay/bare: {ratio:.2f}   (goal: at least {GOAL})")
    print(f"  ratio     bound/bare: {bound_ratio:.2f}   (the most any relay doing this durable work reaches here)")
    print(f"  ratio     relay/bound: {rates['relay'] / rates['bound']:.2f}   (goal: at least {BOUND_GOAL})")
    if bound_ratio < GOAL:
        print(
            f"            the bound itself reaches {bound_ratio:.2f} of the bare producer here: a relay that claims, "
            f"sends and marks one batch at a time cannot reach {GOAL}"
        )
    print(f"  breakdown {breakdown.describe()}")
    for line in breakdown.lines():
        print(f"              {line}")
    if command is not None:
        print(f"  command   relay_outbox --once: {command.describe()}")
        for note in command.notes:
            print(f"              {note}")
    measured = [*phases["bare"], *phases["relay"], *phases["bound"], breakdown.phase, *([command] if command else [])]
    invalid = [p for p in measured if not p.valid]
    for phase in invalid:
        print(f"  !! INVALID: {phase.name}: {phase.describe()}")
    left = pending_count()
    if left:
        print(f"  !! INVALID: {left} outbox rows are still pending")
    valid = not invalid and not left
    figures: dict[str, float | int | str] = {
        "relay_events_per_s": round(rates["relay"]),
        "bare_events_per_s": round(rates["bare"]),
        "bound_events_per_s": round(rates["bound"]),
    }
    if command is not None:
        figures["command_events_per_s"] = round(command.rate)
    _common.summary(
        "relay_throughput",
        valid=valid,
        figures=figures,
        ratios={
            "relay/bare": round(ratio, 2),
            "bound/bare": round(bound_ratio, 2),
            "relay/bound": round(rates["relay"] / rates["bound"], 2),
        },
        goals={
            f"relay/bare >= {GOAL}": ratio >= GOAL,
            f"relay/bound >= {BOUND_GOAL}": rates["relay"] / rates["bound"] >= BOUND_GOAL,
        },
    )
    return 0 if valid else 1


# --- Events ------------------------------------------------------------------------


class EventSource:
    """LotteryEntryCreated events, built by entries.events.entry_created: ballots spread over the keys."""

    def __init__(self, keys: int) -> None:
        self.keys = keys
        self.next_ballot = 1_000_000

    def take(self, count: int) -> Iterator[Any]:
        from django.utils import timezone

        from entries.events import entry_created

        now = timezone.now()
        for _ in range(count):
            ballot_id = self.next_ballot
            self.next_ballot += 1
            player_id = 7_000_000 + (ballot_id * 7919) % 1_000_000
            yield entry_created(
                lottery_id=FIRST_LOTTERY_ID + ballot_id % self.keys,
                ballot_id=ballot_id,
                player_id=player_id,
                player_external_id=f"acct-{uuid.UUID(int=player_id).hex[-12:]}",
                created_at=now + timedelta(microseconds=ballot_id % 1_000_000),
            )


def store(events: Iterator[Any], per_transaction: int) -> float:
    """Store the events with outbox.services.publish, ``per_transaction`` a transaction. Returns seconds."""
    from django.db import connection, transaction

    from outbox.services import publish

    started = time.perf_counter()
    chunk: list[Any] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == per_transaction:
            with transaction.atomic():
                publish(*chunk)
            chunk = []
    if chunk:
        with transaction.atomic():
            publish(*chunk)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxevent")  # as autovacuum would after such an insert
    return seconds


@dataclass(frozen=True)
class OutboundRecord:
    """One pending outbox row as the relay sends it (same key, value and headers)."""

    event_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def pending_records() -> list[OutboundRecord]:
    from outbox.models import OutboxEvent

    rows = OutboxEvent.objects.filter(state=OutboxEvent.State.PENDING).order_by("id")
    records = []
    for row in rows.values_list("event_id", "message_type", "key", "value", "headers"):
        event_id, message_type, key, value, extra = row
        headers = [
            ("messageType", message_type.encode()),
            ("event-id", str(event_id).encode()),
            ("content-type", b"application/json"),
        ]
        headers.extend((name, header.encode()) for name, header in extra.items())
        records.append(OutboundRecord(str(event_id), key.encode(), value.encode(), headers))
    return records


def pending_count() -> int:
    from outbox.models import OutboxEvent

    return OutboxEvent.objects.filter(state=OutboxEvent.State.PENDING).count()


# --- Measurements ------------------------------------------------------------------


def send_bare(producer: Any, records: list[OutboundRecord]) -> None:
    for record in records:
        producer.send(BARE_TOPIC, key=record.key, value=record.value, headers=record.headers)
    producer.flush(timeout=60)


def drain_all() -> Any:
    from outbox.relay import drain

    result = drain(budget_seconds=300)
    if result.more:
        raise RuntimeError("the relay did not drain the outbox within 300 s")
    return result


def measure_bare(producer: Any, records: list[OutboundRecord], reader: _kafka.TopicReader) -> Phase:
    started = time.perf_counter()
    for record in records:
        producer.send(BARE_TOPIC, key=record.key, value=record.value, headers=record.headers)
    sent = time.perf_counter()
    producer.flush(timeout=60)
    phase = Phase("bare", len(records), time.perf_counter() - started)
    phase.notes.append(
        f"send loop {(sent - started) * 1000:.0f} ms, then flush {(phase.seconds - sent + started) * 1000:.0f} ms"
    )
    verify(phase, reader, records)
    return phase


def measure_relay(records: list[OutboundRecord], reader: _kafka.TopicReader) -> Phase:
    started = time.perf_counter()
    result = drain_all()
    phase = Phase("relay", len(records), time.perf_counter() - started)
    phase.notes.append(f"{result.batches} batches, {result.published:,} published, {result.failed} failed")
    verify(phase, reader, records)
    return phase


def verify(phase: Phase, reader: _kafka.TopicReader, records: list[OutboundRecord]) -> None:
    """Each expected event exactly once (nothing else), each key's events in the order they were stored."""
    received = reader.read_new(expect=len(records))
    expected = {r.event_id for r in records}
    counts = Counter(r.event_id for r in received)
    phase.missing = len(expected - counts.keys())
    phase.extra = sum(n for event_id, n in counts.items() if event_id not in expected)
    phase.extra += sum(n - 1 for event_id, n in counts.items() if event_id in expected and n > 1)
    position = {r.event_id: i for i, r in enumerate(records)}
    last: dict[str, int] = defaultdict(lambda: -1)
    for record in sorted(received, key=lambda r: (r.topic, r.partition, r.offset)):
        index = position.get(record.event_id)
        if index is None:
            continue
        if index < last[record.key]:
            phase.out_of_order += 1
        last[record.key] = max(last[record.key], index)


# --- Instrumented relay --------------------------------------------------------------


@dataclass
class Breakdown:
    """Where an instrumented drain spent its time: named parts, each a list of per-batch figures."""

    phase: Phase
    parts: dict[str, list[float]]
    batches: int

    def describe(self) -> str:
        return f"instrumented drain: {self.phase.describe()}, {self.batches} batches"

    def lines(self) -> list[str]:
        total = self.phase.seconds
        lines = []
        accounted = 0.0
        for name, times in self.parts.items():
            spent = sum(times)
            accounted += spent
            lines.append(
                f"{name:<34} {spent * 1000:7.1f} ms ({spent / total:5.1%}), {spent / self.batches * 1000:6.2f} ms "
                f"per batch (first {times[0] * 1000:6.2f}, last {times[-1] * 1000:6.2f})"
            )
        rest = total - accounted
        lines.append(f"{'the rest (Python: rows, headers...)':<34} {rest * 1000:7.1f} ms ({rest / total:5.1%})")
        return lines


def profile_relay(events: Iterator[Any], per_transaction: int, reader: _kafka.TopicReader) -> Breakdown:
    """One more drain, timing (in memory, no file changed) its SQL statements, commits, sends and flushes.

    SQL statements are named after the outbox.relay constant they come from. Sends are summed per
    batch (until the flush that ends it).
    """
    from django.db import connections

    from outbox import kafka, relay

    store(events, per_transaction)
    records = pending_records()
    statements = {
        text: f"SQL {name.strip('_').removesuffix('_SQL').lower().replace('_', ' ')}"
        for name, text in vars(relay).items()
        if name.endswith("_SQL") and isinstance(text, str)
    }
    parts: dict[str, list[float]] = defaultdict(list)
    sends = [0.0]

    def timed(name: str, call: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                if name == "producer.send":
                    sends[-1] += spent
                else:
                    parts[name].append(spent)
                    if name == "producer.flush":
                        sends.append(0.0)

        return wrapper

    def time_sql(execute: Any, query: str, params: Any, many: bool, context: Any) -> Any:
        return timed(statements.get(query, "SQL (other)"), execute)(query, params, many, context)

    producer, database = kafka.producer(), connections["default"]
    patches = [(producer, "send"), (producer, "flush"), (database, "_commit")]
    for owner, method in patches:
        setattr(owner, method, timed("COMMIT" if method == "_commit" else f"producer.{method}", getattr(owner, method)))
    try:
        with database.execute_wrapper(time_sql):
            started = time.perf_counter()
            result = drain_all()
            seconds = time.perf_counter() - started
    finally:
        for owner, method in patches:
            delattr(owner, method)  # the class's method again
    phase = Phase("relay (instrumented)", len(records), seconds)
    verify(phase, reader, records)
    parts["producer.send (summed per batch)"] = [t for t in sends if t]
    order = [*statements.values(), "SQL (other)", "producer.send (summed per batch)", "producer.flush", "COMMIT"]
    return Breakdown(phase, {name: parts[name] for name in order if parts.get(name)}, result.batches)


# --- The bound: claim, send, mark, with no Django ----------------------------------------

BOUND_CLAIM_SQL = """
SELECT id, event_id::text, topic, key, value, message_type, headers::text
FROM outbox_outboxevent WHERE state = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
BOUND_MARK_SQL = "UPDATE outbox_outboxevent SET state = 'published', published_at = now() WHERE id = ANY(%s)"


def measure_bound(producer: Any, records: list[OutboundRecord], reader: _kafka.TopicReader) -> Phase:
    """The floor of the relay's work: psycopg and kafka-python alone, claiming, sending and marking.

    Per batch, in one transaction: the claim (pending rows in id order, ``FOR UPDATE SKIP
    LOCKED``), one ``send()`` per row with the relay's headers, ``flush()``, the mark UPDATE,
    COMMIT. No Django, no hold-back lookup, no failure handling, metrics, tracing or logs:
    what the relay could reach here if all it did were the durable part of its job.
    """
    import psycopg
    from django.conf import settings

    batch_size = settings.OUTBOX_BATCH_SIZE
    with psycopg.connect(host=_common.PG_HOST, port=_common.PG_PORT, user=_common.PG_USER, dbname=DB_NAME) as conn:
        started = time.perf_counter()
        batches = 0
        while True:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(BOUND_CLAIM_SQL, [batch_size])
                rows = cursor.fetchall()
                if not rows:
                    break
                for _id, event_id, topic, key, value, message_type, extra in rows:
                    headers = [
                        ("messageType", message_type.encode()),
                        ("event-id", event_id.encode()),
                        ("content-type", b"application/json"),
                        *((name, header.encode()) for name, header in json.loads(extra).items()),
                    ]
                    producer.send(topic, key=key.encode(), value=value.encode(), headers=headers)
                producer.flush(timeout=60)
                cursor.execute(BOUND_MARK_SQL, [[row[0] for row in rows]])
            batches += 1
        phase = Phase("bound", len(records), time.perf_counter() - started)
    phase.notes.append(f"{batches} batches of up to {batch_size}")
    verify(phase, reader, records)
    return phase


# --- The relay_outbox command ----------------------------------------------------------


def measure_command(
    events: Iterator[Any], per_transaction: int, reader: _kafka.TopicReader, bootstrap: str, tmp: Path
) -> Phase:
    """``relay_outbox --once`` as a subprocess, repeated until the outbox is empty; process start included."""

    env = {**os.environ, **_common.bench_env(DB_NAME), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    env.pop("LOG_LEVEL", None)  # the command logs as it would in production (a line per batch)
    log_path = tmp / "relay_outbox.log"
    command = [sys.executable, "manage.py", "relay_outbox", "--once"]

    def once() -> tuple[float, int]:
        started = time.perf_counter()
        with log_path.open("ab") as log:
            done = subprocess.run(
                command, cwd=_common.ROOT, env=env, stdout=subprocess.PIPE, stderr=log, timeout=120, check=False
            )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"relay_outbox --once exited with {done.returncode}: see {log_path}")
        published = sum(int(w.split()[1].rstrip(",")) for w in done.stdout.decode().splitlines() if "published" in w)
        return seconds, published

    empty_seconds, _ = once()
    store(events, per_transaction)
    records = pending_records()
    runs: list[tuple[float, int]] = []
    while pending_count() and len(runs) < 20:
        runs.append(once())
    seconds = sum(s for s, _ in runs)
    phase = Phase("relay_outbox --once", len(records), seconds)
    verify(phase, reader, records)
    first_published = runs[0][1]
    phase.notes.append(
        f"{len(runs)} run(s) to empty the outbox: "
        + ", ".join(f"{published:,} in {s:.2f} s" for s, published in runs)
        + f"; on an empty outbox it takes {empty_seconds:.2f} s (Python, Django, Kafka clients start-up)"
    )
    if first_published < len(records):
        phase.notes.append(
            f"one --once run stopped after {first_published:,} of {len(records):,} events: it drains for "
            "a 5 s budget and exits with rows still pending"
        )
    net = seconds - len(runs) * empty_seconds
    if net > 0:
        phase.notes.append(f"less start-up: {len(records) / net:.0f} events/s")
    return phase


def format_config(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(", ", "=")).strip("{}").replace('"', "")


if __name__ == "__main__":
    sys.exit(main())
