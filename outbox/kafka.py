"""Kafka clients for this platform: the per-process producer, topic creation, error kinds.

A KafkaProducer owns a background thread and sockets, which do not survive a
fork: each process makes its own on first use, and a forked child (a Celery
pool process) never reuses its parent's.
"""

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)

logger = logging.getLogger(__name__)

# The only errors that are a message's own: the same message fails again on
# any producer and any broker (too large, invalid). Everything else -- a
# broker that is down or restarting, a producer that the broker forgot
# (UnknownProducerIdError) or that kafka-python marked fatal, a timeout, an
# error without a code -- is trouble of the broker or of the producer: the
# producer is rebuilt, the relay backs off, and no event is blamed for it.
MESSAGE_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    InvalidTimestampError,
    InvalidTopicError,
)

_lock = threading.Lock()
_producer: KafkaProducer | None = None
_producer_pid: int | None = None


def is_message_error(error: BaseException) -> bool:
    """True only when the error is the message's own (too large, invalid), never the broker's or the producer's.

    A ``ValueError`` or ``TypeError`` from ``send()`` is kafka-python refusing
    the message's key, value or headers before anything reaches the network.
    """
    if isinstance(error, KafkaError):
        return isinstance(error, MESSAGE_ERRORS)
    return isinstance(error, ValueError | TypeError)


def is_broker_trouble(error: BaseException) -> bool:
    """True for every error that is not the message's own: back off, rebuild the producer, blame no event."""
    return not is_message_error(error)


def producer() -> KafkaProducer:
    """This process's producer: acks from all in-sync replicas, idempotent, built after any fork."""
    global _producer, _producer_pid
    with _lock:
        if _producer is None or _producer_pid != os.getpid():
            timeout = settings.KAFKA_REQUEST_TIMEOUT_MS
            _producer = KafkaProducer(
                bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
                client_id=settings.KAFKA_CLIENT_ID,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                batch_size=256 * 1024,
                compression_type=None,
                request_timeout_ms=timeout,
                delivery_timeout_ms=2 * timeout + 100,
                max_block_ms=timeout,
                bootstrap_timeout_ms=timeout,
                reconnect_backoff_max_ms=2000,
                # Topics are created by the platform (TopicGuard, ensure_topics) with
                # KAFKA_TOPIC_PARTITIONS, never by a send with the broker's default.
                allow_auto_create_topics=False,
            )
            _producer_pid = os.getpid()
        return _producer


def reset_producer() -> None:
    """Drop this process's producer (after broker trouble); the next call builds a fresh one."""
    global _producer
    with _lock:
        stale, _producer = _producer, None
    if stale is not None and _producer_pid == os.getpid():
        try:
            stale.close(timeout=0)
        except Exception as error:  # closing a broken client must not hide the error that broke it
            logger.debug("closing a stale producer failed", exc_info=error)


def recover_producer(error: BaseException) -> None:
    """After a failed send, drop the producer unless the message alone was at fault; the next use builds it anew.

    A producer that met broker trouble may be in a state it never leaves by
    itself: an id the restarted broker forgot, an epoch bump the broker
    refused (kafka-python then marks it fatal), a sender stuck on a dead
    connection. A fresh producer costs one bootstrap; a stuck one costs every
    send until the process restarts. Used by every user of the shared
    producer: the relay, the stake consumer's dead letters and the stake door.
    """
    if not is_message_error(error):
        reset_producer()


def ensure_topics(topics: Iterable[str], *, partitions: int | None = None) -> list[str]:
    """Create the topics that do not exist yet. Returns the ones created. Raises when the broker is down."""
    partitions = partitions or settings.KAFKA_TOPIC_PARTITIONS
    admin = KafkaAdminClient(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id=f"{settings.KAFKA_CLIENT_ID}-admin",
        request_timeout_ms=settings.KAFKA_REQUEST_TIMEOUT_MS,
        bootstrap_timeout_ms=settings.KAFKA_REQUEST_TIMEOUT_MS,
    )
    try:
        missing = sorted(set(topics) - set(admin.list_topics()))
        if missing:
            new = [
                NewTopic(t, num_partitions=partitions, replication_factor=settings.KAFKA_TOPIC_REPLICATION_FACTOR)
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was quicker
                admin.create_topics(new)
            logger.info("kafka topics created", extra={"topics": missing, "partitions": partitions})
        return missing
    finally:
        admin.close()


class TopicGuard:
    """Makes sure a process's topics exist, with KAFKA_TOPIC_PARTITIONS, before it relies on them.

    A broker that restarted empty auto-creates a topic on the first send or
    subscription, with its own default partition count. So a process checks
    its topics when it starts, again after any broker trouble (``stale()``),
    and every KAFKA_TOPICS_CHECK_SECONDS in case an outage went unnoticed.
    ``ensure()`` raises when the broker is down, like ``ensure_topics``.
    """

    def __init__(self, topics: Callable[[], Iterable[str]]) -> None:
        self._topics = topics  # read when checked: settings may change (tests do)
        self._checked: float | None = None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        with self._lock:
            due = self._checked is None or time.monotonic() - self._checked > settings.KAFKA_TOPICS_CHECK_SECONDS
            if due:
                ensure_topics(self._topics())
                self._checked = time.monotonic()

    def stale(self) -> None:
        with self._lock:
            self._checked = None
