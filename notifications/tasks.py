"""Celery tasks of the notifications queue: thin, they take ids and call one service.

Routed to the ``notifications`` queue (``CELERY_TASK_ROUTES``), which a
worker of its own serves, so relay drains never hold a winner's SMS back.
Within that queue, batches (broadcasts, a drop's not-selected messages) go
at the lowest priority (``CELERY_TASK_ROUTES``): a single send (a winner's
SMS) waits for a batch that is running, never behind the batches queued.
The database, not the queue, makes a send happen once: a task that finds
its message taken or done does nothing.
"""

from celery import shared_task

from core.resilience import DATABASE_RETRIES
from notifications.services import notification_batch_send, notification_send, notifications_sweep


@shared_task(ignore_result=True, **DATABASE_RETRIES)
def send_notification(notification_id: int) -> str:
    """Send one message; after a failed attempt, queue the retry for when its backoff ends (beat sweeps too)."""
    outcome = notification_send(notification_id=notification_id)
    if outcome.retry_in is not None:
        send_notification.apply_async((notification_id,), countdown=outcome.retry_in)
    return "sent" if outcome.sent else "not sent"


@shared_task(ignore_result=True, **DATABASE_RETRIES)
def send_notification_batch(lottery_id: int, kind: str) -> int:
    """Send one batch of a lottery's messages of a batched kind, then hand the rest to a fresh task."""
    outcome = notification_batch_send(lottery_id=lottery_id, kind=kind)
    if outcome.more:
        send_notification_batch.delay(lottery_id, kind)
    elif outcome.retry_in is not None:
        send_notification_batch.apply_async((lottery_id, kind), countdown=outcome.retry_in)
    return outcome.sent


@shared_task(ignore_result=True)
def sweep_notifications() -> int:
    """Beat: queue the messages that are due with no task on their way."""
    return notifications_sweep()
