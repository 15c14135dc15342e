"""Which Kafka errors are an event's own fault: only those may ever park an event."""

import pytest
from kafka.errors import (
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    UnknownProducerIdError,
)

from outbox import kafka


@pytest.mark.parametrize(
    "error",
    [MessageSizeTooLargeError(), RecordListTooLargeError(), ValueError("Need at least one: key or value"),
     TypeError("headers must be list-type")],
)  # fmt: skip
def test_too_large_or_invalid_messages_are_their_own_fault(error):
    assert kafka.is_message_error(error)
    assert not kafka.is_broker_trouble(error)


@pytest.mark.parametrize(
    "error",
    [
        KafkaError("Unexpected error in InitProducerIdResponse: -1"),  # a producer kafka-python marked fatal
        UnknownProducerIdError(),
        InvalidProducerEpochError(),
        IllegalStateError("KafkaProducer already closed!"),
        KafkaTimeoutError(),
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
    ],
)
def test_every_other_error_is_the_brokers_or_the_producers(error):
    assert kafka.is_broker_trouble(error)


def test_broker_trouble_rebuilds_the_producer_and_a_bad_message_does_not():
    kafka._producer = first = object()
    kafka._producer_pid = None  # not this process's: reset_producer must not try to close it
    kafka.recover_producer(MessageSizeTooLargeError())
    assert kafka._producer is first

    kafka.recover_producer(KafkaError("Unexpected error in InitProducerIdResponse: -1"))
    assert kafka._producer is None
