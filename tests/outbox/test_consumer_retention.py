"""The consumers' records do not grow forever: the inbox and resolved dead letters are purged after retention."""

from datetime import timedelta

import pytest
from django.utils import timezone

from outbox.inbox import dead_letters_purge, inbox_purge
from outbox.models import DeadLetter, InboxMessage
from outbox.tasks import purge_consumer_records

pytestmark = pytest.mark.django_db


def inbox(message_id: str, age: timedelta) -> None:
    row = InboxMessage.objects.create(consumer="stakes", message_id=message_id)
    InboxMessage.objects.filter(pk=row.pk).update(received_at=timezone.now() - age)


def letter(offset: int, *, status: str, age: timedelta) -> DeadLetter:
    replayed_at = timezone.now() - age if status == DeadLetter.Status.REPLAYED else None
    return DeadLetter.objects.create(consumer="stakes", topic="t", partition=0, offset=offset, digest=str(offset),
                                     value=b"{", reason="bad_json", error="x", status=status,
                                     replayed_at=replayed_at)  # fmt: skip


def test_inbox_rows_past_retention_are_purged_in_bounded_batches(settings):
    settings.INBOX_RETENTION_DAYS = 30
    for n in range(5):
        inbox(f"old-{n}", timedelta(days=31))
    inbox("recent", timedelta(days=29))

    assert inbox_purge(batch_size=2) == 5

    assert list(InboxMessage.objects.values_list("message_id", flat=True)) == ["recent"]


def test_only_replayed_dead_letters_past_retention_are_purged_and_open_ones_never(settings):
    settings.DEAD_LETTER_RETENTION_DAYS = 90
    old_replayed = letter(1, status=DeadLetter.Status.REPLAYED, age=timedelta(days=91))
    recent_replayed = letter(2, status=DeadLetter.Status.REPLAYED, age=timedelta(days=10))
    old_open = letter(3, status=DeadLetter.Status.OPEN, age=timedelta(days=400))
    DeadLetter.objects.filter(pk=old_open.pk).update(created_at=timezone.now() - timedelta(days=400))

    assert dead_letters_purge() == 1

    assert set(DeadLetter.objects.values_list("pk", flat=True)) == {recent_replayed.pk, old_open.pk}
    assert not DeadLetter.objects.filter(pk=old_replayed.pk).exists()


def test_the_beat_task_purges_both(settings):
    inbox("old", timedelta(days=settings.INBOX_RETENTION_DAYS + 1))
    letter(1, status=DeadLetter.Status.REPLAYED, age=timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS + 1))

    assert purge_consumer_records.run() == 2
    assert "purge-consumer-records" in settings.CELERY_BEAT_SCHEDULE
