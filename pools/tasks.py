"""Celery tasks of the pool wing: thin wrappers that call one service."""

from celery import shared_task
from django.utils import timezone

from pools.services import expired_pool_ids, pool_expire


@shared_task
def expire_pools() -> list[int]:
    """Beat: cancel the pools still short of players after POOL_MAX_WAIT_SECONDS."""
    return [pool_id for pool_id in expired_pool_ids(now=timezone.now()) if pool_expire(lottery_id=pool_id)]
