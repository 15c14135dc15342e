"""Chaos run: the relay killed over and over, the broker stopped and restarted empty, PostgreSQL restarted,
all while events keep being written. Prints what was lost, duplicated, reordered and parked, and how long
the backlog took to drain after the broker came back.

Goal: 0 lost, 0 parked, 0 reordered, drained within 30 s of the broker's return.

The world is the run's own: a PostgreSQL cluster on a free port (pg_createcluster), a Tansu broker, the
tests' Redis database 14. A writer thread inserts events for a fixed set of keys, each key's events
numbered; an observer reads the lifecycle topic. Tansu's memory storage forgets what it had acknowledged
when it stops, so the observer reads up to the end offsets right before each stop: an event published
after that read and forgotten by the broker is counted apart ("forgotten"), not as lost.

Run from the project root:  .venv/bin/python bench/chaos.py [--help]
The short version CI runs:  .venv/bin/python bench/chaos.py --short
"""

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import _common  # also puts the project root on sys.path
import psycopg
from kafka import KafkaConsumer, TopicPartition

from tests.kafka import Broker
from tests.postgres import OwnPostgres

TOPIC = "lottery.v1.lifecycle"
GOAL_DRAIN_SECONDS = 30.0

_INSERT = (
    "INSERT INTO outbox_outboxevent (event_id, event_type, topic, message_type, key, value, headers, state,"
    " attempts, last_error, created_at) VALUES (%s, 'LotteryClosed', %s, 'lotteryClosed', %s, %s, '{}',"
    " 'pending', 0, '', now())"
)


@dataclass
class Written:
    """What the writer committed: event id -> (key, seq), and when each batch committed."""

    events: dict[str, tuple[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: int = 0


def writer(url: str, keys: list[str], rate: float, stop: threading.Event, written: Written) -> None:
    """Insert events at ``rate`` per second, 10 per transaction, riding out a PostgreSQL restart."""
    seq = dict.fromkeys(keys, 0)
    conn: psycopg.Connection | None = None
    while not stop.is_set():
        started = time.monotonic()
        batch = []
        for _ in range(10):
            key = random.choice(keys)
            batch.append((str(uuid.uuid4()), key, seq[key]))
            seq[key] += 1
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(url, connect_timeout=2)
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    _INSERT, [(eid, TOPIC, key, json.dumps({"key": key, "seq": n})) for eid, key, n in batch]
                )
            with written.lock:
                for eid, key, n in batch:
                    written.events[eid] = (key, n)
        except psycopg.Error:
            written.errors += 1
            for _eid, key, _n in batch:
                seq[key] -= 1  # not written: the key's numbering must stay gapless
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)
        time.sleep(max(0.0, 10 / rate - (time.monotonic() - started)))
    if conn is not None:
        conn.close()


class Observer:
    """Reads the topic from the start of each broker incarnation; remembers every message it saw, in order."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: list[tuple[str, str, int]] = []  # (event id, key, seq), in the order read per partition
        self.consumer: KafkaConsumer | None = None

    def _connect(self) -> KafkaConsumer:
        if self.consumer is None:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
            partitions = consumer.partitions_for_topic(TOPIC) or set()
            consumer.assign([TopicPartition(TOPIC, p) for p in sorted(partitions)])
            consumer.seek_to_beginning()
            self.consumer = consumer
        return self.consumer

    def catch_up(self, timeout: float = 30) -> None:
        """Read until every partition's position reaches the end offset it had when asked."""
        consumer = self._connect()
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError("the observer could not read up to the end offsets")
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    value = json.loads(record.value)
                    event_id = dict(record.headers)["event-id"].decode()
                    self.seen.append((event_id, value["key"], value["seq"]))

    def forget_incarnation(self) -> None:
        """The broker is going away: the next read starts at the new incarnation's beginning."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


def unpublished_at_or_below(url: str, last_id: int) -> int:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute(
            "SELECT count(*) FROM outbox_outboxevent WHERE state <> 'published' AND id <= %s", [last_id]
        ).fetchone()[0]


def query(url: str, sql: str) -> list[tuple]:
    for _ in range(50):
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                return conn.execute(sql).fetchall()
        except psycopg.OperationalError:
            time.sleep(0.2)  # PostgreSQL may still be restarting
    raise RuntimeError("PostgreSQL did not come back")


class Relay:
    """A ``relay_outbox`` process that can be killed with SIGKILL and started again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.process = env, log, None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(_common.ROOT / "manage.py"), "relay_outbox"],
                cwd=_common.ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill_and_restart(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1
        self.start()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -9


def analyse(written: Written, observer: Observer, forgotten_ids: set[str]) -> dict[str, int]:
    seen_ids = [event_id for event_id, _, _ in observer.seen]
    distinct = set(seen_ids)
    lost = set(written.events) - distinct - forgotten_ids
    by_key: dict[str, list[int]] = defaultdict(list)
    for _event_id, key, seq in observer.seen:
        by_key[key].append(seq)
    reordered = 0
    for seqs in by_key.values():
        first_seen = list(dict.fromkeys(seqs))
        reordered += sum(1 for a, b in itertools.pairwise(first_seen) if b < a)
    return {
        "written": len(written.events),
        "delivered": len(distinct & set(written.events)),
        "lost": len(lost),
        "forgotten_by_broker": len(forgotten_ids - distinct),
        "duplicated": len(seen_ids) - len(distinct),
        "reordered": reordered,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="CI's version: 5 kills, one 15 s broker stop")
    parser.add_argument("--relay-kills", type=int, default=20)
    parser.add_argument("--broker-stop-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="events written per second")
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--backoff-cap", type=int, default=10, help="OUTBOX_BACKOFF_MAX_SECONDS of the relay")
    parser.add_argument("--time-limit", type=int, default=600)
    args = parser.parse_args()
    if args.short:
        args.relay_kills, args.broker_stop_seconds = 5, 15.0
    signal.alarm(args.time_limit)

    print(
        f"chaos: {args.relay_kills} relay kills, broker stopped {args.broker_stop_seconds:.0f} s, one PostgreSQL "
        f"restart, {args.rate:.0f} events/s over {args.keys} keys, relay backoff cap {args.backoff_cap:.0f} s",
        flush=True,
    )
    env = {
        **os.environ,
        **_common.bench_env("unused"),
        "OUTBOX_BACKOFF_MAX_SECONDS": str(args.backoff_cap),
        "KAFKA_REQUEST_TIMEOUT_MS": "3000",
        "LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        cluster = OwnPostgres().start(env={k: v for k, v in env.items() if k != "DATABASE_URL"})
        broker = Broker(Path(tmp) / "tansu.log").start()
        env.update({"DATABASE_URL": cluster.url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
        relay = Relay(env, Path(tmp) / "relay.log")
        stop_writing = threading.Event()
        written = Written()
        keys = [f"chaos-{n}" for n in range(args.keys)]
        thread = threading.Thread(target=writer, args=(cluster.url, keys, args.rate, stop_writing, written))
        observer = Observer(broker.bootstrap)
        forgotten: set[str] = set()
        parked, drained, code = -1, float("inf"), -1
        try:
            relay.start()
            thread.start()
            _common.step("relay up, writer writing")
            time.sleep(3)
            for _ in range(args.relay_kills):
                time.sleep(random.uniform(0.5, 2.0))
                relay.kill_and_restart()
            _common.step(f"relay killed {relay.kills} times")

            observer.catch_up()
            broker.stop()
            observer.forget_incarnation()
            time.sleep(1)  # a batch acknowledged just before the stop is marked now
            published = "SELECT event_id FROM outbox_outboxevent WHERE state = 'published'"
            # Acknowledged but not yet read when the broker went: the broker forgot them, the relay did its part.
            forgotten = {str(row[0]) for row in query(cluster.url, published)} - {e for e, _, _ in observer.seen}
            _common.step(f"broker stopped for {args.broker_stop_seconds:.0f} s")
            time.sleep(args.broker_stop_seconds)
            broker.start()
            returned = time.monotonic()
            last_id = query(cluster.url, "SELECT coalesce(max(id), 0) FROM outbox_outboxevent")[0][0]
            while unpublished_at_or_below(cluster.url, last_id) and time.monotonic() - returned < 300:
                time.sleep(0.2)
            drained = time.monotonic() - returned
            _common.step(f"backlog written before the return drained {drained:.1f} s after it")

            cluster.restart()
            _common.step("PostgreSQL restarted")
            time.sleep(3)
            stop_writing.set()
            thread.join(30)
            deadline = time.monotonic() + 120
            while query(cluster.url, "SELECT count(*) FROM outbox_outboxevent WHERE state = 'pending'")[0][0]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            observer.catch_up()
            parked = query(cluster.url, "SELECT count(*) FROM outbox_outboxevent WHERE state = 'failed'")[0][0]
        finally:
            stop_writing.set()
            if relay.process is not None:
                code = relay.stop()
            if observer.consumer is not None:
                observer.consumer.close()
            broker.stop()
            cluster.drop()
            relay_log = (Path(tmp) / "relay.log").read_text(errors="replace")
        figures = analyse(written, observer, forgotten)
        figures.update({"parked": parked, "relay_kills": relay.kills, "writer_retries": written.errors,
                        "drain_seconds": round(drained, 1), "relay_exit": code})  # fmt: skip
    print(f"  written {figures['written']:,}, delivered {figures['delivered']:,}, lost {figures['lost']}, "
          f"forgotten by the broker {figures['forgotten_by_broker']}, duplicated {figures['duplicated']}, "
          f"reordered {figures['reordered']}, parked {figures['parked']}")  # fmt: skip
    print(f"  drained {drained:.1f} s after the broker's return (goal {GOAL_DRAIN_SECONDS:.0f} s); "
          f"the writer retried {written.errors} batch(es) across the PostgreSQL restart")  # fmt: skip
    valid = figures["written"] > 0 and figures["relay_kills"] == args.relay_kills and figures["relay_exit"] == 0
    met = valid and figures["lost"] == figures["parked"] == figures["reordered"] == 0
    met = met and drained <= GOAL_DRAIN_SECONDS
    if not valid:
        print("  the run was not valid (nothing written, kills missed, or the relay did not stop cleanly):")
        print(relay_log[-3000:])
    print(f"  goal {'met' if met else 'NOT met'}")
    summary = {"benchmark": "chaos", "short": args.short, "valid": valid, "goal_met": met, **figures}
    print(json.dumps(summary))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
