import logging
import signal
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from kafka.errors import KafkaError

from core.process import started
from outbox.events import TOPICS
from outbox.kafka import ensure_topics
from outbox.relay import Backoff
from pools.consumer import consume

logger = logging.getLogger("pools.consumer")


class Command(BaseCommand):
    help = (
        "Consume player.stakeCreated from player.v1.staked (group lottery_service_consumer_group) into pools, "
        "until SIGTERM or SIGINT, which finish the batch in hand and commit it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        started("consumer")
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        backoff = Backoff()
        while not self.stopping:  # the broker may still be starting (bin/run starts them together)
            try:
                ensure_topics([*TOPICS, settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])
                break
            except KafkaError as error:
                delay = backoff.next_delay()
                logger.warning(
                    "Kafka unavailable (%s); retrying in %.1f s", error, delay, extra={"retry_in": round(delay, 1)}
                )
                time.sleep(delay)
        # It speaks through its log lines (JSON on stderr, core.logs): one per batch ("stake batch").
        logger.info("consumer started", extra={"topic": settings.STAKES_TOPIC, "group": settings.STAKES_CONSUMER_GROUP})
        consume(should_stop=lambda: self.stopping)
        logger.info("consumer stopped", extra={"topic": settings.STAKES_TOPIC, "group": settings.STAKES_CONSUMER_GROUP})

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
