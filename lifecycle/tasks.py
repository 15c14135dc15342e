"""Celery tasks: thin wrappers that take ids and call one service."""

import logging

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import TransitionSource
from lotteries.selectors import lotteries_due_ids

logger = logging.getLogger(__name__)


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


@shared_task(
    autoretry_for=(OperationalError,),  # database unreachable, deadlock, serialization: all recover
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def close_lottery(lottery_id: int, source: str = TransitionSource.BEAT) -> str:
    outcome = lottery_close(lottery_id=lottery_id, source=source)
    return outcome.lottery.state


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def draw_lotteries(lottery_ids: list[int]) -> list[str]:
    """Draw the pools a batch of stakes filled (queued after its commit), one transaction each.

    ``lottery_close`` is idempotent: a retry after a failure redraws none.
    """
    return [lottery_close(lottery_id=i, source=TransitionSource.POOL_FILL).lottery.state for i in lottery_ids]
