"""Kafka plumbing shared by the relay benchmarks: the tests' throw-away Tansu broker, producers and readers.

Not a benchmark itself. Like ``_common`` it needs no Django, so a benchmark can
start the broker and set KAFKA_BOOTSTRAP_SERVERS before ``_common.setup_django``.
"""

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import _common  # also puts the project root on sys.path

from tests.kafka import Broker

# The relay's producer settings that the bare baseline producer copies (read from the relay's own
# producer, so the baseline follows outbox/kafka.py if it changes).
PRODUCER_SETTINGS = (
    "acks",
    "enable_idempotence",
    "linger_ms",
    "batch_size",
    "compression_type",
    "max_in_flight_requests_per_connection",
    "request_timeout_ms",
    "delivery_timeout_ms",
    "max_block_ms",
    "retries",
)


@contextmanager
def bench_environment(db_name: str, *, prefix: str, time_limit: int) -> Iterator[tuple[Broker, Path]]:
    """A Kafka benchmark's world: its own broker, database and Redis database, all gone afterwards.

    Starts Tansu, points KAFKA_BOOTSTRAP_SERVERS at it, sets Django up on a fresh
    database, and stops the whole run with TimeoutError past ``time_limit`` seconds.
    """

    def give_up(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark ran past --time-limit {time_limit} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(time_limit)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        broker = Broker(Path(tmp) / "tansu.log").start()
        _common.step(f"Tansu broker on {broker.bootstrap}")
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        try:
            _common.setup_django(db_name)
            _common.create_database(db_name)
            _common.flush_redis()
            try:
                yield broker, Path(tmp)
            finally:
                from outbox.kafka import reset_producer

                reset_producer()
                _common.flush_redis()
                _common.drop_database(db_name)
                print(f"  .. dropped database {db_name}, flushed Redis database 14", flush=True)
        finally:
            signal.alarm(0)
            broker.stop()
            print("  .. broker stopped", flush=True)


def producer_settings(producer: Any) -> dict[str, Any]:
    """The settings of ``producer`` that a baseline producer must share."""
    return {name: producer.config[name] for name in PRODUCER_SETTINGS}


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def partitions_of(consumer: Any, topic: str, timeout: float = 10) -> list[Any]:
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout
    found = consumer.partitions_for_topic(topic)
    while not found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = consumer.partitions_for_topic(topic)
    if not found:
        raise RuntimeError(f"topic {topic} has no partitions")
    return [TopicPartition(topic, p) for p in sorted(found)]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    event_id: str
    value: bytes


class TopicReader:
    """Reads a topic from its beginning, a phase at a time (partitions assigned, no consumer group).

    Tansu answers ListOffsets(latest) with the base offset of the partition's last record batch, not
    the offset after its last record, so end offsets cannot mark where a phase starts: the reader
    keeps its position instead, and each ``read_new`` returns what arrived since the previous one.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 << 20,
        )
        self.consumer.assign(partitions_of(self.consumer, topic))
        self.consumer.seek_to_beginning()

    def read_new(self, *, expect: int, timeout: float = 60, quiet: float = 0.5) -> list[Record]:
        """Records until ``expect`` arrived (or ``timeout``), then until none came for ``quiet`` seconds."""
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            records += self._poll(200)
        while batch := self._poll(int(quiet * 1000)):
            records += batch
        return records

    def _poll(self, timeout_ms: int) -> list[Record]:
        records = []
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            for r in batch:
                event_id = dict(r.headers).get("event-id", b"").decode()
                records.append(Record(r.topic, r.partition, r.offset, r.key.decode(), event_id, r.value))
        return records

    def close(self) -> None:
        self.consumer.close()
