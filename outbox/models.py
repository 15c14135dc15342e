"""The outbox table: one row per event, written in the producer's transaction."""

import uuid

from django.db import models
from django.db.models import Q


class OutboxEvent(models.Model):
    """An event waiting for, or done with, its trip to Kafka.

    ``id`` is the event's position: for one ``key`` (the aggregate id) the
    relay publishes in ``id`` order, and an unpublished or failed event holds
    back every later event of its key.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        PUBLISHED = "published"
        FAILED = "failed", "failed (parked)"

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=64)
    topic = models.CharField(max_length=249)
    message_type = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    value = models.TextField(help_text="The JSON envelope, exactly as sent.")
    # Extra Kafka headers captured when the event was written (traceparent).
    headers = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(name="outbox_pending", fields=["id"], condition=Q(state="pending")),
            models.Index(name="outbox_unpublished_by_key", fields=["key", "id"], condition=~Q(state="published")),
            models.Index(name="outbox_published_at", fields=["published_at"], condition=Q(state="published")),
            models.Index(fields=["event_type", "-created_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                name="outbox_published_has_time",
                condition=Q(state="published", published_at__isnull=False) | ~Q(state="published"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"
