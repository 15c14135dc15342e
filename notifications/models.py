"""SMS notifications: the delivery log, and the record the local gateways keep of the messages they accepted.

A ``Notification`` is written once per (kind, award) or (kind, lottery,
player), in the transaction that made its reason (an award, a drop's close),
and moves ``pending`` -> ``sending`` -> ``sent`` or ``failed``, guarded in
the database (``notifications.services``): a worker takes a message by one
conditional UPDATE, so two workers or a redelivered task never both send it.
Its id is the idempotency key the gateway sees (``idempotency_key``).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

# The staff permission of this app, as services and admin check it.
RESEND_NOTIFICATION = "notifications.resend_notification"


class Notification(models.Model):
    class Kind(models.TextChoices):
        WINNER = "winner"
        NOT_SELECTED = "not_selected", "not selected"
        BROADCAST = "broadcast"

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    lottery = models.ForeignKey("lotteries.Lottery", on_delete=models.PROTECT, related_name="+")
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notifications")
    # Winners only: the award the message announces.
    award = models.ForeignKey("draws.LotteryAward", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    recipient = models.CharField(max_length=32, help_text="The phone number, as the player's record held it.")
    body = models.TextField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Gateway calls made (the first and the retries).")
    # Pending: not to be tried before this (the retries' backoff). Sending: taken again after this (a dead worker).
    next_attempt_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When a task to send it was last queued (or is due to run): the sweep queues it again only a lease later.
    queued_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The successful gateway call's time.")
    gateway_message_id = models.CharField(max_length=100, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("resend_notification", "Can send a failed SMS notification again")]
        constraints = [
            # Once per award, and once per (kind, lottery, player) for the messages that are not about an award.
            models.UniqueConstraint(name="notification_once_per_award", fields=["kind", "award"]),
            models.UniqueConstraint(
                name="notification_once_per_lottery_player",
                fields=["kind", "lottery", "player"],
                condition=Q(award__isnull=True),
            ),
            models.CheckConstraint(
                name="notification_winner_has_award",
                condition=Q(kind="winner", award__isnull=False) | (~Q(kind="winner") & Q(award__isnull=True)),
            ),
            models.CheckConstraint(
                name="notification_sending_has_lease",
                condition=~Q(state="sending") | Q(lease_expires_at__isnull=False),
            ),
        ]
        indexes = [
            # The sweep's and the batches' reads: what is due, by kind and lottery.
            models.Index(
                name="notification_due",
                fields=["state", "next_attempt_at"],
                condition=Q(state__in=["pending", "sending"]),
            ),
            # Whether a batched kind's sends still move: the latest change among a lottery's messages of a kind.
            models.Index(name="notification_batch_activity", fields=["lottery", "kind", "updated_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} SMS {self.pk}"

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.pk)


class Broadcast(models.Model):
    """One announcement to many players (a drop's opening), with its progress as its batches go.

    ``sent`` and ``failed`` move in the transaction that records each batch's
    outcome, so they always agree with the messages' states; ``remaining``
    is what is still to be sent or retried. A broadcast stopped by a crash
    resumes from its messages' states (beat's sweep), messaging nobody twice.
    """

    lottery = models.OneToOneField("lotteries.Lottery", on_delete=models.PROTECT, primary_key=True, related_name="+")
    body = models.TextField()
    total = models.PositiveIntegerField()
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"broadcast of lottery {self.pk}"

    @property
    def remaining(self) -> int:
        return self.total - self.sent - self.failed


def idempotency_key(notification_id: int) -> str:
    """What the gateway sees as the message's key: the notification's id, so every attempt and re-send shares it."""
    return f"notification-{notification_id}"


class GatewayMessage(models.Model):
    """A message the simulated or console gateway accepted, by its idempotency key: the gateway's own memory.

    It stands for the provider's side: written in its own transaction when the
    gateway accepts a message, never rolled back with the sender's work, so a
    key it has seen is refused whatever happened to the worker that sent it.
    """

    idempotency_key = models.CharField(max_length=100, primary_key=True)
    gateway_message_id = models.CharField(max_length=100, unique=True)
    backend = models.CharField(max_length=16)
    recipient = models.CharField(max_length=32)
    body = models.TextField()
    accepted_at = models.DateTimeField()

    class Meta:
        ordering = ["-accepted_at"]

    def __str__(self) -> str:
        return f"gateway message {self.gateway_message_id}"
