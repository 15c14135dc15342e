"""The stake door: a test stake produced to Kafka as a game service would, for the consumer to apply."""

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from kafka.errors import KafkaError

from core import tracing
from core.authorization import require_permission
from outbox import kafka
from pools.errors import BrokerUnavailable, InvalidStake
from pools.models import PRODUCE_STAKE
from pools.stake_messages import MESSAGE_TYPE, StakeRefused, parse_stake

logger = logging.getLogger(__name__)

# The door creates the stakes topic (and its DLQ) itself before it sends, so a
# broker that restarted empty never auto-creates it with another partition count.
_stake_topics = kafka.TopicGuard(lambda: [settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])


@dataclass(frozen=True)
class ProducedStake:
    stake_id: str
    topic: str
    partition: int
    offset: int


def stake_produce(*, message: dict[str, Any], actor: AbstractUser | None) -> ProducedStake:
    """Validate a stake as the consumer will, then produce it to the stakes topic, as a game service would.

    Keyed by game, so one game's stakes reach the consumer in order. Waits for
    the broker's acknowledgement. A staff ``actor`` needs ``produce_stake``;
    ``None`` is a service holding the stakes token.
    """
    require_permission(actor, PRODUCE_STAKE)
    try:
        stake = parse_stake(json.dumps(message).encode(), {"messageType": MESSAGE_TYPE.encode()})
    except StakeRefused as refused:
        raise InvalidStake(refused.message, details={"reason": refused.reason}) from None
    try:
        _stake_topics.ensure()
        # Traced, the send's span writes its traceparent into the headers: the consumer continues this trace.
        with tracing.span("stake produce", {tracing.STAKE_ID: stake.stake_id}):
            metadata = (
                kafka.producer()
                .send(
                    settings.STAKES_TOPIC,
                    key=stake.game_id.encode(),
                    value=json.dumps(message).encode(),
                    headers=[
                        ("messageType", MESSAGE_TYPE.encode()),
                        ("content-type", b"application/json"),
                        *tracing.kafka_trace_headers(),
                    ],
                )
                .get(timeout=settings.KAFKA_REQUEST_TIMEOUT_MS / 1000)
            )
    except KafkaError as error:
        kafka.recover_producer(error)
        _stake_topics.stale()
        raise BrokerUnavailable(details={"error": type(error).__name__}) from None
    logger.info(
        "stake produced",
        extra={
            "stake_id": stake.stake_id,
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
        },
    )
    return ProducedStake(stake.stake_id, metadata.topic, metadata.partition, metadata.offset)
