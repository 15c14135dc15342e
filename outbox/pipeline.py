"""Is the event pipeline moving? Heartbeats of the relay and the consumer, and the outbox's own state.

``/health/ready`` reports this in its ``pipeline`` section, and ``/metrics``
as gauges. It never makes a web process unready: one parked event must not
take every web process out of a load balancer. Instead the pipeline is
``degraded``, with reasons, when

- the oldest pending event is older than ``OUTBOX_STALL_SECONDS``;
- events are parked as failed;
- the relay or the consumer has not beaten for ``HEARTBEAT_STALE_SECONDS``
  (or never has).

Heartbeats live in Redis: each long-running loop calls ``heartbeat()`` on
every turn, and it writes at most once per ``HEARTBEAT_INTERVAL_SECONDS``.
"""

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from core.db import sql
from outbox.coordination import redis_client
from outbox.models import OutboxEvent

logger = logging.getLogger(__name__)

RELAY = "relay"
CONSUMER = "consumer"
PROCESSES = (RELAY, CONSUMER)
HEARTBEAT_INTERVAL_SECONDS = 2.0
_KEY = "lottery:heartbeat:{}"

_last_beat: dict[str, float] = {}

_BACKLOG_SQL = sql(
    """
SELECT count(*) FILTER (WHERE state = {pending}),
       count(*) FILTER (WHERE state = {failed}),
       coalesce(extract(epoch FROM now() - min(created_at)), 0),
       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = {pending})), 0)
FROM {OutboxEvent}
WHERE state <> {published}
""",
    OutboxEvent=OutboxEvent,
    pending=OutboxEvent.State.PENDING,
    failed=OutboxEvent.State.FAILED,
    published=OutboxEvent.State.PUBLISHED,
)


@dataclass(frozen=True)
class OutboxBacklog:
    """The unpublished part of the outbox, as /metrics and /health/ready both report it."""

    pending: int
    parked: int  # state failed
    oldest_unpublished_age_seconds: float
    oldest_pending_age_seconds: float


def outbox_backlog() -> OutboxBacklog:
    """One query over the unpublished rows (a partial index keeps it cheap). Raises on database trouble."""
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOG_SQL)
        pending, parked, oldest, oldest_pending = cursor.fetchone()
    return OutboxBacklog(int(pending), int(parked), float(oldest), float(oldest_pending))


def heartbeat(process: str) -> None:
    """Say that ``process`` (relay, consumer) is alive and turning. Cheap to call often; never raises."""
    now = time.time()
    if now - _last_beat.get(process, 0.0) < HEARTBEAT_INTERVAL_SECONDS:
        return
    try:
        redis_client().set(_KEY.format(process), repr(now), ex=max(3600, settings.HEARTBEAT_STALE_SECONDS * 10))
        _last_beat[process] = now
    except (RedisError, OSError) as error:
        logger.debug("heartbeat of %s not written", process, exc_info=error)


@dataclass(frozen=True)
class PipelineStatus:
    degraded: bool
    reasons: list[str]
    oldest_pending_age_seconds: float
    parked_events: int
    heartbeat_age_seconds: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "degraded" if self.degraded else "ok",
            "reasons": self.reasons,
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 1),
            "parked_events": self.parked_events,
            "heartbeat_age_seconds": {
                name: None if age is None else round(age, 1) for name, age in self.heartbeat_age_seconds.items()
            },
        }


def pipeline_status() -> PipelineStatus:
    """The pipeline as it is now. Raises when PostgreSQL or Redis cannot be asked (the caller reports that)."""
    backlog = outbox_backlog()
    oldest, parked = backlog.oldest_pending_age_seconds, backlog.parked
    beats = redis_client().mget([_KEY.format(name) for name in PROCESSES])
    now = time.time()
    ages = {
        name: None if beat is None else max(0.0, now - float(beat)) for name, beat in zip(PROCESSES, beats, strict=True)
    }
    reasons = []
    if float(oldest) > settings.OUTBOX_STALL_SECONDS:
        reasons.append(f"outbox_stalled: the oldest pending event is {float(oldest):.0f} s old")
    if parked:
        reasons.append(f"parked_events: {parked} event(s) parked as failed")
    for name, age in ages.items():
        if age is None:
            reasons.append(f"{name}_heartbeat_missing: no {name} has reported")
        elif age > settings.HEARTBEAT_STALE_SECONDS:
            reasons.append(f"{name}_heartbeat_stale: last seen {age:.0f} s ago")
    return PipelineStatus(bool(reasons), reasons, float(oldest), int(parked), ages)
