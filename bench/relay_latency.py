"""Outbox latency: from an event's commit to a consumer reading it, beside a bare producer's send-to-read.

Starts a Tansu broker (memory storage) on a free port and a throw-away
database. A consumer runs in a process of its own for the whole run
(kafka-python, partitions assigned, no group, ``fetch_max_wait_ms=10``,
``fetch_min_bytes=1``, polls of at most 100 ms) and stamps each record with
the time its poll returned, keyed by the ``event-id`` header. Times are
``time.monotonic()`` (CLOCK_MONOTONIC, shared by all processes of the machine).

Phases, one after the other, each at 200 events/s (one every 5 ms on a fixed
schedule, two emitter threads taking turns, as concurrent requests would, so a
slow commit does not hold the next one back) for 30 s after 3 s of warm-up,
LotteryEntryCreated events across 200 keys:

* baseline: a bare ``KafkaProducer`` with the relay producer's settings sends
  each event (same key, value and headers as the relay would) to a topic of its
  own: latency is send() to read;
* command: the ``relay_outbox`` command runs as a subprocess, polling the
  outbox (``--idle-seconds``, default 0.05); this process commits each event
  with ``outbox.services.publish`` in ``transaction.atomic()``: latency is
  commit to read (stamped by the first on_commit callback);
* celery: the same, relayed by a Celery worker (prefork, concurrency 2, as in
  the Procfile) that ``publish``'s on_commit kick queues runs for. No beat.

Printed per phase: p50/p90/p99/max latency (goal for the relays: p99 under
250 ms), the rate achieved, and the verification: every event read exactly
once and nothing else on the topics. A missing or extra record makes the run
invalid (exit 1).

Run from the project root:  .venv/bin/python bench/relay_latency.py [--help]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database
lottery_bench_latency and flushes Redis database 14 (the Celery broker here).
"""

import argparse
import json
import math
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common
import _kafka

DB_NAME = "lottery_bench_latency"
BARE_TOPIC = "bench.bare.entry"
FIRST_LOTTERY_ID = 52_000
CONSUMER_SETTINGS = {"fetch_max_wait_ms": 10, "fetch_min_bytes": 1, "enable_auto_commit": False}
POLL_MS = 100
PHASES = ("bare", "command", "celery")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="events per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of events before each measurement")
    parser.add_argument("--keys", type=int, default=200, help="distinct aggregate ids (lotteries)")
    parser.add_argument(
        "--emitters", type=int, default=2, help="threads taking turns at the schedule (each commit has its own)"
    )
    parser.add_argument("--idle-seconds", type=float, default=0.05, help="relay_outbox's poll pause")
    parser.add_argument(
        "--relays", default="command,celery", help="relays to measure, comma-separated: command, celery"
    )
    parser.add_argument("--time-limit", type=int, default=600, help="seconds before the run gives up")
    args = parser.parse_args()
    args.relays = [r.strip() for r in args.relays.split(",") if r.strip()]
    if not set(args.relays) <= {"command", "celery"}:
        parser.error("--relays takes command and/or celery")
    return args


def main() -> int:
    args = parse_args()
    print(
        f"relay_latency: {args.rate:g} events/s for {args.duration:g} s after {args.warmup:g} s of warm-up, per phase "
        f"(bare, {', '.join(args.relays)}); {args.keys} keys",
        flush=True,
    )

    with _kafka.bench_environment(DB_NAME, prefix="bench-latency-", time_limit=args.time_limit) as (broker, tmp):
        return run(args, broker, tmp)


@dataclass
class Phase:
    name: str
    label: str
    sent: dict[str, float] = field(default_factory=dict)  # event id -> commit (or send) time, measured events
    warm: set[str] = field(default_factory=set)  # warm-up and probe events: verified, not measured
    seconds: float = 0.0
    missing: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    emit_ms: list[float] = field(default_factory=list)  # how long each send() or commit() call took
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.sent) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float, figures: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if figures is None else figures)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]  # nearest rank

    def describe(self) -> str:
        if not self.latencies_ms:
            return f"{len(self.sent):,} events, none read"
        figures = "  ".join(f"p{p} {self.percentile(p):6.1f}" for p in (50, 90, 99))
        return (
            f"{figures}  max {max(self.latencies_ms):6.1f} ms   ({len(self.sent):,} events at {self.rate:.1f}/s"
            + (f"; {self.missing} missing" if self.missing else "")
            + ")"
        )


def run(args: argparse.Namespace, broker: _kafka.Broker, tmp: Path) -> int:
    from django.conf import settings
    from kafka import KafkaProducer

    from outbox import kafka
    from outbox.events import ENTRY_TOPIC, TOPICS

    started = time.monotonic()
    _common.migrate()
    kafka.ensure_topics(TOPICS)
    _kafka.create_topic(broker.bootstrap, BARE_TOPIC, settings.KAFKA_TOPIC_PARTITIONS)
    # Read from the relay's own producer (built here, idle, closed at the end: this process only commits).
    producer_config = _kafka.producer_settings(kafka.producer())
    _common.step(
        f"database {DB_NAME} migrated, topics created ({settings.KAFKA_TOPIC_PARTITIONS} partitions; "
        f"{time.monotonic() - started:.1f} s); consumer: {CONSUMER_SETTINGS}, polls of {POLL_MS} ms"
    )

    consumer = Consumer(broker.bootstrap, [BARE_TOPIC, ENTRY_TOPIC])
    events = EventSource(args.keys)
    phases: list[Phase] = []
    try:
        bare = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="bench-bare", **producer_config)
        try:
            phase = Phase("bare", "bare KafkaProducer, send() to read")

            def send(event: Any) -> float:
                record = outbound(event)
                sent = time.monotonic()
                bare.send(BARE_TOPIC, key=record[0], value=record[1], headers=record[2])
                return sent

            phases.append(measure(phase, send, events, consumer, args))
        finally:
            bare.close(timeout=5)

        for relay in args.relays:
            if relay == "command":
                command = [sys.executable, "manage.py", "relay_outbox", "--idle-seconds", str(args.idle_seconds)]
                label = f"relay_outbox command (--idle-seconds {args.idle_seconds:g}), commit to read"
            else:
                _common.flush_redis()  # no kick or pause left by the earlier phases
                command = [sys.executable, "-m", "celery", "--app", "lottery_site", "worker"]
                command += ["--loglevel", "INFO", "--concurrency", "2"]  # as in the Procfile
                label = "Celery worker kicked on commit (prefork x 2), commit to read"
            with Server(command, broker.bootstrap, tmp / f"{relay}.log") as server:
                phase = measure(Phase(relay, label), commit, events, consumer, args)
            phases.append(phase)
            relayed = len(phase.sent) + len(phase.warm)
            batches = server.lines("outbox batch")
            per_batch = relayed / max(1, len(batches))
            note = f"relay: {len(batches):,} batches sent events ({per_batch:.1f} events per batch)"
            if relay == "celery":
                tasks = len({line.get("task_id") for line in batches})  # the tasks that published something
                note += f", {tasks:,} relay tasks sent events ({relayed / max(1, tasks):.1f} events per task)"
            phase.notes.append(note + ", warm-up included")
    finally:
        consumer.stop()
        kafka.reset_producer()

    known = set().union(*(set(p.sent) | p.warm for p in phases))
    extra = sum(1 for event_id in consumer.received if event_id not in known) + sum(consumer.duplicates.values())
    missing = sum(p.missing for p in phases)
    print("results (ms)")
    for phase in phases:
        name = "baseline" if phase.name == "bare" else "relay"
        print(f"  {name:<9} {phase.label}")
        print(f"            {phase.describe()}" + ("   (goal: p99 under 250 ms)" if name == "relay" else ""))
        for note in phase.notes:
            print(f"            {note}")
    print(f"  verified  {len(known):,} events sent (warm-up included): {missing} missing, {extra} extra")
    valid = not missing and not extra and all(p.latencies_ms for p in phases)
    if not valid:
        print("  !! INVALID RUN: events missing on the topics, or extra records (duplicates or unknown)")
    figures: dict[str, float | int | str] = {}
    goals: dict[str, bool] = {}
    for phase in phases:
        if phase.latencies_ms:
            figures[f"{phase.name}_p50_ms"] = round(phase.percentile(50), 1)
            figures[f"{phase.name}_p99_ms"] = round(phase.percentile(99), 1)
            if phase.name != "bare":
                goals[f"{phase.name} p99 under 250 ms"] = phase.percentile(99) < 250
    _common.summary("relay_latency", valid=valid, figures=figures, goals=goals)
    return 0 if valid else 1


# --- Producing ---------------------------------------------------------------------


class EventSource:
    """LotteryEntryCreated events, built by entries.events.entry_created, the ballots spread over the keys."""

    def __init__(self, keys: int) -> None:
        self.keys = keys
        self.next_ballot = 2_000_000
        self.lock = threading.Lock()

    def next(self) -> Any:
        from django.utils import timezone

        from entries.events import entry_created

        with self.lock:
            ballot_id = self.next_ballot
            self.next_ballot += 1
        player_id = 8_000_000 + (ballot_id * 7919) % 1_000_000
        return entry_created(
            lottery_id=FIRST_LOTTERY_ID + ballot_id % self.keys,
            ballot_id=ballot_id,
            player_id=player_id,
            player_external_id=f"acct-{player_id:012x}",
            created_at=timezone.now(),
        )


def outbound(event: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers as the relay sends them."""
    headers = [
        ("messageType", event.route.message_type.encode()),
        ("event-id", str(event.id).encode()),
        ("content-type", b"application/json"),
    ]
    return event.aggregate_id.encode(), event.to_json().encode(), headers


def commit(event: Any) -> float:
    """Store the event with outbox.services.publish in its own transaction; returns the commit time."""
    from django.db import transaction

    from outbox.services import publish

    stamp: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: stamp.append(time.monotonic()))  # runs first: before publish's kick
        publish(event)
    return stamp[0]


def measure(
    phase: Phase, emit: Callable[[Any], float], events: EventSource, consumer: "Consumer", args: argparse.Namespace
) -> Phase:
    """A probe (waits for the relay to be up), warm-up, then the measured stream, then waits for the stragglers."""
    probe = events.next()
    emit(probe)
    phase.warm.add(str(probe.id))
    if not consumer.wait_for({str(probe.id)}, timeout=30):
        raise RuntimeError(f"{phase.name}: the first event never arrived")
    _common.step(
        f"{phase.name}: relay up, first event read; {args.warmup:g} s of warm-up, {args.duration:g} s measured"
    )

    interval = 1 / args.rate
    warm_until = round(args.warmup * args.rate)
    total = warm_until + round(args.duration * args.rate)
    late: list[int] = []
    errors: list[BaseException] = []
    started = time.monotonic() + 0.05

    def emitter(first: int) -> None:
        """Emits events first, first + N, first + 2N... (N emitters), each at its own due time."""
        from django.db import connection

        try:
            for i in range(first, total, args.emitters):
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -interval:
                    late.append(i)
                event = events.next()
                before = time.monotonic()
                stamp = emit(event)
                phase.emit_ms.append((time.monotonic() - before) * 1000)
                if i < warm_until:
                    phase.warm.add(str(event.id))
                else:
                    phase.sent[str(event.id)] = stamp
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=emitter, args=(j,), daemon=True) for j in range(args.emitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    phase.seconds = max(phase.sent.values()) - min(phase.sent.values())

    consumer.wait_for(set(phase.sent) | phase.warm, timeout=15)
    for event_id, sent in phase.sent.items():
        read = consumer.received.get(event_id)
        if read is None:
            phase.missing += 1
        else:
            phase.latencies_ms.append((read - sent) * 1000)
    phase.missing += len(phase.warm - consumer.received.keys())
    what = "send()" if phase.name == "bare" else "transaction with publish(), commit and on_commit kick"
    phase.notes.append(
        f"emitters: each {what} took p50 {phase.percentile(50, phase.emit_ms):.2f} ms, "
        f"p99 {phase.percentile(99, phase.emit_ms):.2f} ms, max {max(phase.emit_ms):.2f} ms"
    )
    if late:
        phase.notes.append(f"{len(late)} event(s) emitted more than one interval late (the emitters fell behind)")
    _common.step(f"{phase.name}: {phase.describe()}")
    return phase


# --- Relay processes ----------------------------------------------------------------


class Server:
    """A relay process (the command or a Celery worker) for the length of a phase; stopped by SIGTERM."""

    def __init__(self, command: list[str], bootstrap: str, log_path: Path) -> None:
        self.command = command
        self.env = {**os.environ, **_common.bench_env(DB_NAME), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        self.env.pop("LOG_LEVEL", None)  # production logging: INFO, a line per batch
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Server":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=_common.ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def lines(self, event: str) -> list[dict[str, Any]]:
        """The process's log lines (JSON, core.logs) of this event."""
        found = []
        with self.log_path.open(errors="replace") as log:
            for line in log:
                if line.startswith("{") and (entry := json.loads(line)).get("event") == event:
                    found.append(entry)
        return found

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        elif self.process.returncode:
            raise RuntimeError(f"{self.command[2]} exited with {self.process.returncode}: see {self.log_path}")


# --- Consuming ----------------------------------------------------------------------


class Consumer:
    """The reading side, in a process of its own (no GIL shared with the emitter).

    The child stamps each record when its poll returns and streams (event id, time) pairs back.
    """

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.records: Any = context.Queue()
        self.stopping = context.Event()
        self.process = context.Process(
            target=consume, args=(bootstrap, topics, self.records, self.stopping), daemon=True
        )
        self.received: dict[str, float] = {}
        self.duplicates: Counter[str] = Counter()
        self.process.start()
        first = self.records.get(timeout=60)
        if first != "ready":
            raise RuntimeError(f"the consumer did not start: {first}")

    def _take(self, timeout: float) -> bool:
        try:
            batch = self.records.get(timeout=timeout)
        except queue.Empty:
            return False
        if isinstance(batch, str):
            raise RuntimeError(f"the consumer failed: {batch}")
        for event_id, read in batch:
            if event_id in self.received:
                self.duplicates[event_id] += 1
            else:
                self.received[event_id] = read
        return True

    def wait_for(self, event_ids: set[str], *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not event_ids <= self.received.keys():
            if time.monotonic() >= deadline:
                return False
            self._take(0.05)
        return True

    def stop(self) -> None:
        """Collect what is still coming (until 1 s without a record), then stop the child."""
        while self._take(1.0):
            pass
        self.stopping.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def consume(bootstrap: str, topics: list[str], records: Any, stopping: Any) -> None:
    """The consumer process: read the topics from their start, send (event id, read time) per poll."""
    from kafka import KafkaConsumer

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER_SETTINGS)
        consumer.assign([tp for topic in topics for tp in _kafka.partitions_of(consumer, topic)])
        consumer.seek_to_beginning()
        consumer.poll(timeout_ms=POLL_MS)  # the first poll resolves the offsets; the topics are still empty
    except Exception as error:
        records.put(f"{type(error).__name__}: {error}")
        raise
    records.put("ready")
    try:
        while not stopping.is_set():
            polled = consumer.poll(timeout_ms=POLL_MS)
            read = time.monotonic()
            batch = [(dict(r.headers).get("event-id", b"").decode(), read) for rs in polled.values() for r in rs]
            if batch:
                records.put(batch)
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
