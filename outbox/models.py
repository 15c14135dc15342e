"""The outbox table: one row per event, written in the producer's transaction."""

import uuid

from django.db import models
from django.db.models import Q

# The staff permissions of this app, as services and views check them.
REPLAY_OUTBOX_EVENT = "outbox.replay_outbox_event"
REPLAY_DEAD_LETTER = "outbox.replay_dead_letter"


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
        permissions = [("replay_outbox_event", "Can put a parked (failed) outbox event back in line")]
        indexes = [
            models.Index(name="outbox_pending", fields=["id"], condition=Q(state="pending")),
            models.Index(name="outbox_unpublished_by_key", fields=["key", "id"], condition=~Q(state="published")),
            models.Index(name="outbox_published_at", fields=["published_at"], condition=Q(state="published")),
            # The claim skips rows behind a parked row of their key: a probe
            # of this (nearly always empty) index, whatever the backlog.
            models.Index(name="outbox_failed_by_key", fields=["key", "id"], condition=Q(state="failed")),
        ]
        constraints = [
            models.CheckConstraint(
                name="outbox_published_has_time",
                condition=Q(state="published", published_at__isnull=False) | ~Q(state="published"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"


class InboxMessage(models.Model):
    """A message a consumer has applied, by its id: the second delivery finds it here and changes nothing."""

    consumer = models.CharField(max_length=100)
    message_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(name="inbox_once_per_consumer", fields=["consumer", "message_id"])]
        indexes = [models.Index(name="inbox_by_age", fields=["received_at"])]  # the retention purge

    def __str__(self) -> str:
        return f"{self.consumer}: {self.message_id}"


class DeadLetter(models.Model):
    """A consumed message that could not be applied, kept whole with the reason.

    It was also produced to the topic's dead-letter topic. Staff can replay
    it once the cause is fixed (the player unbanned, say).
    """

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"

    consumer = models.CharField(max_length=100)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    key = models.BinaryField(null=True, blank=True)
    value = models.BinaryField()
    headers = models.JSONField(default=dict, blank=True)
    # sha256 of the message's key, value and headers (outbox.inbox.message_digest).
    digest = models.CharField(max_length=64)
    reason = models.CharField(max_length=64)
    error = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("replay_dead_letter", "Can replay a dead-lettered message")]
        constraints = [
            # A redelivered bad message is the same dead letter, not a second one;
            # a replayed letter steps aside, so a replay that fails again opens a new one.
            # Offsets alone do not identify a message: a recreated topic, or a broker
            # that lost its log, hands the same offsets to new messages.
            models.UniqueConstraint(
                name="dead_letter_once_per_message",
                fields=["topic", "partition", "offset", "digest"],
                condition=Q(status="open"),
            ),
        ]
        indexes = [models.Index(fields=["reason", "status"])]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"

    @property
    def value_text(self) -> str:
        return bytes(self.value).decode("utf-8", errors="replace")


class ConsumerCounter(models.Model):
    """What a consumer did with the messages of one partition.

    Updated in the same transaction as the effects, so at every moment
    ``received = applied + duplicate + dead_lettered``.
    """

    consumer = models.CharField(max_length=100)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    received = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    dead_lettered = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(name="counter_per_partition", fields=["consumer", "topic", "partition"]),
            models.CheckConstraint(
                name="counter_balances",
                condition=Q(received=models.F("applied") + models.F("duplicate") + models.F("dead_lettered")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.topic}[{self.partition}]"


class ConsumerHourCounter(models.Model):
    """What a consumer did with one partition's messages in one UTC hour: ``ConsumerCounter`` by the hour.

    Moved in the same transaction as the effects (``outbox.inbox.counters_add``), at the batch's
    moment, the one its inbox rows, dead letters and effects carry, so that each hour's
    ``received = applied + duplicate + dead_lettered`` can be checked against those rows.
    """

    consumer = models.CharField(max_length=100)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    hour = models.DateTimeField(help_text="The start of the UTC hour.")
    received = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    dead_lettered = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                name="hour_counter_per_partition", fields=["consumer", "topic", "partition", "hour"]
            ),
            models.CheckConstraint(
                name="hour_counter_balances",
                condition=Q(received=models.F("applied") + models.F("duplicate") + models.F("dead_lettered")),
            ),
        ]
        indexes = [models.Index(name="hour_counter_by_hour", fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.consumer} {self.topic}[{self.partition}] at {self.hour:%Y-%m-%d %H}:00"
