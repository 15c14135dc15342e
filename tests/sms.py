"""Test helpers for SMS: the live settings of the simulated gateway, and a worker on the notifications queue."""

from collections.abc import Iterator
from contextlib import contextmanager

from celery.contrib.testing.worker import start_worker
from django.conf import settings

from core.models import LiveSetting
from entries.models import Player
from lottery_site.celery import app

# No waiting: the simulated gateway answers at once unless a test says otherwise.
FAST = {"SMS_LATENCY_MIN_MS": 0, "SMS_LATENCY_MAX_MS": 0, "SMS_BATCH_LATENCY_MIN_MS": 0, "SMS_BATCH_LATENCY_MAX_MS": 0}


def set_live(**values: object) -> None:
    """Set live settings as staff would in admin, and make this process read them now."""
    for name, value in values.items():
        LiveSetting.objects.update_or_create(name=name, defaults={"value": str(value)})
    from core import live

    live.forget()


def fast_gateway(**overrides: object) -> None:
    set_live(**{**FAST, "SMS_FAILURE_RATE": 0, **overrides})


@contextmanager
def notifications_worker() -> Iterator[object]:
    """A worker thread on the notifications queue alone, as the notifier process runs."""
    queues = app.amqp.queues
    selected = queues._consume_from  # type: ignore[attr-defined]  # start_worker's queue choice outlives it: later tests get theirs back
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=[settings.NOTIFICATIONS_QUEUE]
        ) as worker:
            yield worker
    finally:
        queues._consume_from = selected  # type: ignore[attr-defined]


def players_with_phones(n: int, *, prefix: str) -> list[Player]:
    """``n`` players, each with a phone number of their own: an audience for a broadcast."""
    return Player.objects.bulk_create(
        Player(username=f"{prefix}-{i:05d}", password="!", phone_number=f"+1556{i:07d}") for i in range(n)
    )
