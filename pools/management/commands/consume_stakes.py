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
from pools.consumer import StakeBatch, consume


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
                self.stderr.write(f"Kafka unavailable ({error}); retrying in {delay:.1f} s")
                time.sleep(delay)
        self.stdout.write(f"consuming {settings.STAKES_TOPIC} as {settings.STAKES_CONSUMER_GROUP}")
        consume(should_stop=lambda: self.stopping, on_batch=self._report)
        self.stdout.write("consumer stopped")

    def _report(self, result: StakeBatch) -> None:
        self.stdout.write(
            f"received {result.total('received')}, applied {result.total('applied')}, "
            f"duplicate {result.total('duplicate')}, dead-lettered {result.total('dead_lettered')}"
        )

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
