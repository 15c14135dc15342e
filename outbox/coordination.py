"""How the relays agree through Redis: the pending flag that coalesces kicks, and the shared pause.

Every key the relay keeps in Redis lives here, and nowhere else:

- ``outbox:relay:pending`` is set while a relay run is queued or running:
  kicks meanwhile queue nothing. The run clears it once drained and then
  looks once more, so an event whose kick found the flag set is never left
  for the sweep;
- ``outbox:relay:paused`` is set, with the backoff as its expiry, while the
  broker is down: every Celery worker's kicks and sweeps return at once
  instead of each waiting out a timeout;
- ``outbox:relay:failures`` counts the consecutive failed runs, so the
  backoff grows across workers and runs, and says an outage was seen (the
  next run re-creates the topics first).

Nothing here raises for Redis trouble when it is asked to kick: the beat
sweep is the fallback.
"""

import logging
from functools import lru_cache

from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PENDING_KEY = "outbox:relay:pending"
PAUSED_KEY = "outbox:relay:paused"
FAILURES_KEY = "outbox:relay:failures"
FAILURES_TTL_SECONDS = 3600


@lru_cache(maxsize=1)
def redis_client() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)


def kick_relay() -> None:
    """Queue a relay run unless one is already queued. Never raises: the sweep is the fallback."""
    from outbox.tasks import relay_outbox  # the task module imports the relay, which imports this one

    try:
        if redis_client().set(PENDING_KEY, b"1", nx=True, ex=60):
            relay_outbox.delay()
    except (RedisError, OSError) as error:
        logger.warning("could not kick the outbox relay; the sweep will pick the events up", exc_info=error)


def relay_run_drained() -> None:
    """Called by a relay run once the outbox was empty: from now on a kick queues a new run."""
    try:
        redis_client().delete(PENDING_KEY)
    except (RedisError, OSError) as error:
        logger.warning("could not clear the relay's pending flag", exc_info=error)


def relay_paused() -> bool:
    """True while the relays back off from a broker outage."""
    return bool(redis_client().exists(PAUSED_KEY))


def outage_seen() -> bool:
    """True when the last relay runs failed on the broker (it may have come back empty)."""
    return bool(redis_client().exists(FAILURES_KEY))


def relay_failed() -> int:
    """Count one more failed run; returns how many in a row (the backoff's exponent)."""
    redis = redis_client()
    failures = int(redis.incr(FAILURES_KEY))
    redis.expire(FAILURES_KEY, FAILURES_TTL_SECONDS)
    return failures


def pause_relay(seconds: float) -> None:
    redis_client().set(PAUSED_KEY, b"1", px=max(1, int(seconds * 1000)))


def relay_succeeded() -> None:
    redis_client().delete(FAILURES_KEY)
