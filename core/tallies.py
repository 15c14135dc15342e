"""Hourly tallies of what leaves no row of its own, batched per process.

``tally(measure, dimension=..., code=...)`` adds one to this process's buffer
and returns at once: no statement, no lock. The buffer is written by
``flush()``, one INSERT ... ON CONFLICT DO UPDATE for everything it holds,
adding to the rows of ``core.HourlyTally``. So a burst of a thousand refusals
in a process costs one statement per ``TALLY_FLUSH_SECONDS``, not a thousand
updates queueing on one hot row.

Each process flushes from a daemon thread of its own (started on the first
tally after a fork, so every gunicorn worker and Celery child has its own),
every ``TALLY_FLUSH_SECONDS``, and once more at exit. A process killed
outright loses at most that many seconds of tallies: they are business
figures, not the ledger (what the ledger needs has rows of its own). A
flush that fails keeps its counts for the next one.

``TALLY_FLUSH_SECONDS = 0`` writes each tally at once, in the caller's
connection and transaction (the tests use it to read tallies back at once).
"""

import atexit
import logging
import os
import threading
from collections import Counter
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from core.db import sql
from core.models import HourlyTally

logger = logging.getLogger(__name__)

Key = tuple[datetime, str, str, str]  # (hour, measure, dimension, code)

_UPSERT_SQL = sql(
    """
INSERT INTO {HourlyTally} AS t (hour, measure, dimension, code, count)
SELECT * FROM unnest(%s::timestamptz[], %s::varchar[], %s::varchar[], %s::varchar[], %s::bigint[])
ON CONFLICT (hour, measure, dimension, code) DO UPDATE SET count = t.count + EXCLUDED.count
""",
    HourlyTally=HourlyTally,
)

_lock = threading.Lock()
_pending: Counter[Key] = Counter()
_flusher_pid: int | None = None


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def tally(measure: str, *, dimension: str = "", code: str = "", count: int = 1, at: datetime | None = None) -> None:
    """Count ``count`` occurrences of ``measure`` in the hour of ``at`` (now). Never raises for the database."""
    key = (hour_of(at or timezone.now()), measure, dimension, code)
    with _lock:
        _pending[key] += count
    if settings.TALLY_FLUSH_SECONDS <= 0:
        flush()
    else:
        _ensure_flusher()


def pending() -> dict[Key, int]:
    """What this process holds, not yet written."""
    with _lock:
        return dict(_pending)


def flush() -> int:
    """Write this process's buffer in one statement (its own transaction, or a savepoint of the caller's).

    Returns how many rows it touched. On a database error the counts go back
    into the buffer for the next flush.
    """
    with _lock:
        items = list(_pending.items())
        _pending.clear()
    if not items:
        return 0
    columns: list[list[object]] = [[], [], [], [], []]
    for (hour, measure, dimension, code), count in items:
        for column, value in zip(columns, (hour, measure, dimension, code, count), strict=True):
            column.append(value)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_UPSERT_SQL, columns)
    except DatabaseError as error:
        with _lock:
            _pending.update(dict(items))
        logger.warning("tallies not written, kept for the next flush: %s", error)
        return 0
    return len(items)


def _ensure_flusher() -> None:
    """Start this process's flushing thread once (again in a forked child: threads do not survive a fork)."""
    global _flusher_pid
    pid = os.getpid()
    if _flusher_pid == pid:
        return
    with _lock:
        if _flusher_pid == pid:
            return
        _flusher_pid = pid
    threading.Thread(target=_flush_forever, name="tally-flusher", daemon=True).start()


def _flush_forever() -> None:
    stop = threading.Event()
    while not stop.wait(settings.TALLY_FLUSH_SECONDS):
        _flush_in_thread()


def _flush_in_thread() -> None:
    try:
        flush()
    finally:
        close_old_connections()  # this thread's own connection: dropped when broken or past its age


@atexit.register
def _flush_at_exit() -> None:
    if _flusher_pid == os.getpid():
        try:
            _flush_in_thread()
        except Exception as error:  # at exit there is no one left to tell but the log
            logger.warning("tallies lost at exit: %s", error)
