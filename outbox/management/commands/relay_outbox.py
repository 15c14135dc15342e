import logging
import signal
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections
from kafka.errors import KafkaError

from core.process import started
from core.resilience import Outage, drop_database_connection
from outbox.events import TOPICS
from outbox.kafka import TopicGuard
from outbox.pipeline import RELAY, heartbeat
from outbox.relay import Backoff, RelayBrokerDown, drain

logger = logging.getLogger("outbox.relay")


class Command(BaseCommand):
    help = (
        "Relay outbox events to Kafka: once (--once), or in a loop until SIGTERM or SIGINT, which finish the "
        "batch in hand. Safe beside other relays and the Celery relay task."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="Drain the outbox until it is empty, then exit.")
        parser.add_argument(
            "--idle-seconds", type=float, default=0.05, help="Pause between polls when the outbox is empty."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started("relay")
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        backoff = Backoff()
        kafka_outage, database_outage = Outage(logger, "Kafka"), Outage(logger, "PostgreSQL")
        topics = TopicGuard(lambda: TOPICS)
        # The loop speaks through its log lines (JSON on stderr, core.logs); --once reports its count on stdout.
        logger.info("relay started", extra={"once": options["once"], "idle_seconds": options["idle_seconds"]})
        published = failed = 0
        while not self.stopping:
            heartbeat(RELAY)
            try:
                topics.ensure()
                result = drain(budget_seconds=5, should_stop=lambda: self.stopping)
            except (RelayBrokerDown, KafkaError) as error:
                if options["once"]:
                    raise CommandError(f"Kafka is unavailable: {error}") from error
                topics.stale()
                delay = backoff.next_delay()
                kafka_outage.failed(error, retry_in=delay)
                self._sleep(delay)
                continue
            except DatabaseError as error:
                if options["once"]:
                    raise CommandError(f"PostgreSQL is unavailable: {error}") from error
                drop_database_connection()
                delay = backoff.next_delay()
                database_outage.failed(error, retry_in=delay)
                self._sleep(delay)
                continue
            backoff.reset()
            kafka_outage.recovered()
            database_outage.recovered()
            published, failed = published + result.published, failed + result.failed
            if options["once"] and not result.more:
                self.stdout.write(f"published {published}, failed {failed}")  # for whoever ran it
                break
            if not result.more:
                close_old_connections()
                self._sleep(options["idle_seconds"])
        else:
            if options["once"]:  # a signal ended the drain: what went out so far, and that more may wait
                self.stdout.write(f"published {published}, failed {failed}; stopped before the outbox was empty")
        logger.info("relay stopped")

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))
