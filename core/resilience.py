"""What every long-running loop (relay, stake consumer) needs to ride out an outage of PostgreSQL or Kafka,
and the retries of the Celery tasks that the database's failures interrupt.

A loop that meets an outage drops its database connection (a restarted
server leaves it dead, and Django only replaces a connection it was told is
unusable), backs off, and tries again; it says so once when the outage
starts and once when it ends, not at every try.
"""

import contextlib
import logging
import time
from typing import TypedDict

from django.db import OperationalError, connection


class TaskRetries(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


# A task's options (``@shared_task(**DATABASE_RETRIES)``) when what may interrupt it is the database:
# unreachable, a deadlock, a serialization failure, all of which recover. Retried with exponential
# backoff and jitter, at most a minute apart, eight times; the task itself must be safe to run again.
DATABASE_RETRIES: TaskRetries = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


class Outage:
    """One dependency's outage, as a loop sees it: logged at its start and at its end."""

    def __init__(self, logger: logging.Logger, dependency: str) -> None:
        self.logger = logger
        self.dependency = dependency
        self.since: float | None = None
        self.tries = 0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException, *, retry_in: float) -> None:
        self.tries += 1
        if self.since is None:
            self.since = time.monotonic()
            self.logger.warning(
                "%s unavailable, retrying with backoff (next in %.1f s): %s: %s",
                self.dependency,
                retry_in,
                type(error).__name__,
                error,
                extra={"dependency": self.dependency},
            )
        else:
            self.logger.debug("%s still unavailable (try %d): %s", self.dependency, self.tries, error)

    def recovered(self) -> None:
        if self.since is None:
            return
        seconds = time.monotonic() - self.since
        self.logger.warning(
            "%s available again after %.1f s and %d tries",
            self.dependency,
            seconds,
            self.tries,
            extra={"dependency": self.dependency, "outage_seconds": round(seconds, 1)},
        )
        self.since, self.tries = None, 0


def drop_database_connection() -> None:
    """Close this thread's database connection, dead or alive; the next query opens a fresh one."""
    with contextlib.suppress(Exception):  # closing a connection the server already dropped may fail: it is gone
        connection.close()
