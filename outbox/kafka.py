"""Kafka clients for this platform: the per-process producer, topic creation, error kinds.

A KafkaProducer owns a background thread and sockets, which do not survive a
fork: each process makes its own on first use, and a forked child (a Celery
pool process) never reuses its parent's.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Iterable

from django.conf import settings
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    OutOfOrderSequenceNumberError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)

logger = logging.getLogger(__name__)

# The broker no longer knows this producer's id or sequence (a restarted
# broker forgets them): the producer must be rebuilt, then it can carry on.
PRODUCER_STATE_ERRORS = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError)

_lock = threading.Lock()
_producer: KafkaProducer | None = None
_producer_pid: int | None = None


def is_broker_trouble(error: BaseException) -> bool:
    """True when the error says the broker is unreachable or unwell, not that the message is bad."""
    if isinstance(error, PRODUCER_STATE_ERRORS):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


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


def forget_producer_if_stale(error: BaseException) -> None:
    """After an error that says the broker forgot this producer (a restart), build a new one next time."""
    if isinstance(error, PRODUCER_STATE_ERRORS) or isinstance(error.__cause__, PRODUCER_STATE_ERRORS):
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
