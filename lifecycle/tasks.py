"""Celery tasks: thin wrappers that take ids and call one service.

Timers: a lottery that opens or closes at a moment (a scheduled drop's
``opens_at``, any open lottery's ``closes_at`` but a pool's) gets a task
queued for that moment (``lottery_timer``, with ``eta``), so it opens or
closes within seconds of it rather than at beat's next minute. A timer is
queued only once the moment is within ``LOTTERY_TIMER_HORIZON_SECONDS``:
by the service that creates or opens the lottery, or by beat's
``arm_lottery_timers`` sweep every minute. The horizon stays below the
broker's visibility timeout (Redis: one hour), past which a held ``eta``
message would be delivered again. Each timer is queued once (a key in the
shared cache). Beat's ``open_due_lotteries`` and ``close_due_lotteries``
sweeps remain the safety net: a lost timer costs at most a minute.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core.resilience import DATABASE_RETRIES
from lifecycle.services import daily_lottery_open, lottery_close, scheduled_lottery_open
from lotteries.errors import LotteryNotDue, LotteryNotFound
from lotteries.models import Lottery, TransitionSource
from lotteries.selectors import lotteries_due_ids, lotteries_to_open_ids, lotteries_with_moments_before

logger = logging.getLogger(__name__)

OPEN, CLOSE = "open", "close"  # what a lottery's timer does


@shared_task
def open_daily_lottery() -> int:
    """Beat: make sure today's daily lottery exists (idempotent)."""
    return daily_lottery_open(source=TransitionSource.BEAT).pk


@shared_task
def close_due_lotteries() -> list[int]:
    """Beat: queue a close for every lottery whose entrance window has ended.

    One task per lottery, so one failing lottery neither blocks nor repeats
    the others; ``lottery_close`` is idempotent, so a lottery queued twice by
    overlapping sweeps is drawn once.
    """
    due = lotteries_due_ids(now=timezone.now())
    for lottery_id in due:
        close_lottery.delay(lottery_id, TransitionSource.BEAT)
    return due


@shared_task
def open_due_lotteries() -> list[int]:
    """Beat: open every scheduled lottery whose ``opens_at`` has come (the safety net behind its timer)."""
    due = lotteries_to_open_ids(now=timezone.now())
    for lottery_id in due:
        open_lottery.delay(lottery_id, TransitionSource.BEAT)
    return due


@shared_task
def arm_lottery_timers() -> int:
    """Beat: queue the timers of the lotteries whose moment comes within the horizon; how many were new."""
    now = timezone.now()
    horizon = now + timedelta(seconds=settings.LOTTERY_TIMER_HORIZON_SECONDS)
    return lottery_timers_arm(lotteries_with_moments_before(now=now, until=horizon), now=now)


@shared_task(**DATABASE_RETRIES)
def close_lottery(lottery_id: int, source: str = TransitionSource.BEAT) -> str:
    outcome = lottery_close(lottery_id=lottery_id, source=source)
    return outcome.lottery.state


@shared_task(**DATABASE_RETRIES)
def open_lottery(lottery_id: int, source: str = TransitionSource.BEAT) -> str:
    return scheduled_lottery_open(lottery_id=lottery_id, source=source).lottery.state


@shared_task(**DATABASE_RETRIES)
def lottery_timer(lottery_id: int, action: str) -> str:
    """At a lottery's ``opens_at`` or ``closes_at`` (queued with that ``eta``): open it, or close and draw it.

    A timer that fires a moment early (another host's clock) queues itself
    again for the rest; one for a lottery already moved on changes nothing.
    """
    try:
        if action == OPEN:
            opened = scheduled_lottery_open(lottery_id=lottery_id, source=TransitionSource.TIMER)
            if opened.lottery.state == Lottery.State.SCHEDULED:
                lottery_timer.apply_async((lottery_id, OPEN), eta=opened.lottery.opens_at)
            return opened.lottery.state
        return lottery_close(lottery_id=lottery_id, source=TransitionSource.TIMER).lottery.state
    except LotteryNotDue as early:
        lottery_timer.apply_async((lottery_id, CLOSE), eta=datetime.fromisoformat(early.details["closes_at"]))
        return Lottery.State.OPEN
    except LotteryNotFound:
        logger.warning("lottery timer for a missing lottery", extra={"lottery_id": lottery_id, "action": action})
        return ""


def lottery_timers_arm(lotteries: Sequence[Lottery], *, now: datetime | None = None) -> int:
    """Queue each lottery's next timer when its moment is within the horizon, once; how many were queued.

    The next moment of a scheduled lottery is its ``opens_at``; of an open
    one (not a pool: pools close when full) its ``closes_at``.
    """
    now = now or timezone.now()
    horizon = timedelta(seconds=settings.LOTTERY_TIMER_HORIZON_SECONDS)
    queued = 0
    for lottery in lotteries:
        if lottery.state == Lottery.State.SCHEDULED:
            action, at = OPEN, lottery.opens_at
        elif lottery.state == Lottery.State.OPEN and lottery.kind != Lottery.Kind.POOL:
            action, at = CLOSE, lottery.closes_at
        else:
            continue
        if at - now > horizon:
            continue  # arm_lottery_timers queues it when it comes near
        key = f"lifecycle.timer:{lottery.pk}:{action}:{at.isoformat()}"
        if not cache.add(key, 1, timeout=settings.LOTTERY_TIMER_HORIZON_SECONDS + 300):
            continue  # queued already
        try:
            lottery_timer.apply_async((lottery.pk, action), eta=at)
        except Exception:
            cache.delete(key)  # not queued: the next sweep tries again
            raise
        queued += 1
    return queued


@shared_task(**DATABASE_RETRIES)
def draw_lotteries(lottery_ids: list[int]) -> list[str]:
    """Draw the pools a batch of stakes filled (queued after its commit), one transaction each.

    ``lottery_close`` is idempotent: a retry after a failure redraws none.
    """
    return [lottery_close(lottery_id=i, source=TransitionSource.POOL_FILL).lottery.state for i in lottery_ids]
