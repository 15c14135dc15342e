"""Celery tasks of the outbox: the relay (kicked on commit, swept by beat) and the purge."""

import logging

from celery import shared_task
from django.conf import settings
from kafka.errors import KafkaError

from outbox import coordination
from outbox.events import TOPICS
from outbox.inbox import dead_letters_purge, inbox_purge
from outbox.kafka import ensure_topics
from outbox.pipeline import RELAY, heartbeat
from outbox.relay import Backoff, RelayBrokerDown, drain
from outbox.services import purge_published

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def relay_outbox() -> int:
    """Drain the outbox for up to OUTBOX_TASK_BUDGET_SECONDS; returns how many events were published.

    Kicked after commits (coalesced by the pending flag) and swept by beat.
    While the broker is down every run returns at once; the flag stays set
    (it expires) and the sweep resumes the work when the pause ends.
    """
    heartbeat(RELAY)
    if coordination.relay_paused():
        return 0
    try:
        if coordination.outage_seen():
            # The broker was down: it may have come back empty. Create the topics with
            # KAFKA_TOPIC_PARTITIONS before a send auto-creates them with the broker's default.
            ensure_topics(TOPICS)
        result = drain(budget_seconds=settings.OUTBOX_TASK_BUDGET_SECONDS)
        if result.more:
            relay_outbox.delay()  # hand the rest to a fresh task rather than hog this worker
            return result.published
        # Drained: let the next kick queue a run, then look once more for
        # events whose kick came while the flag was still set.
        coordination.relay_run_drained()
        published = result.published + drain(budget_seconds=settings.OUTBOX_TASK_BUDGET_SECONDS).published
    except (RelayBrokerDown, KafkaError) as error:
        delay = Backoff.delay_after(coordination.relay_failed())
        coordination.pause_relay(delay)
        logger.warning(
            "kafka unavailable, relay paused for %.1f s: %s", delay, error, extra={"pause_seconds": round(delay, 1)}
        )
        return 0
    coordination.relay_succeeded()
    return published


@shared_task(ignore_result=True)
def purge_outbox() -> int:
    return purge_published()


@shared_task(ignore_result=True)
def purge_consumer_records() -> int:
    """The consumers' inbox past INBOX_RETENTION_DAYS, and replayed dead letters past DEAD_LETTER_RETENTION_DAYS."""
    return inbox_purge() + dead_letters_purge()
