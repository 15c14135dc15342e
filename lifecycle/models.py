"""The life cycle's one table: the drops created with an Idempotency-Key, so that a retry finds its first drop."""

from django.conf import settings
from django.db import models

from lotteries.models import Lottery

DROP_REQUEST_KEY_CONSTRAINT = "drop_request_key_unique_per_actor"


class DropRequest(models.Model):
    """A ``POST /api/v1/drops`` that named an Idempotency-Key, and the drop it created (``lifecycle.services``).

    A key is the caller's own: a staff member's, or the platform's (``actor``
    empty: the drops token) for every caller of the internal token. ``terms``
    is the digest of what was asked, so that a retry is told apart from a
    second drop under a reused key.
    """

    id = models.BigAutoField(primary_key=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    terms = models.CharField(max_length=64, help_text="SHA-256 of the asked terms, hex.")
    lottery = models.OneToOneField(Lottery, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "lifecycle_drop_request"
        constraints = [
            # The platform's keys (no actor) are one caller's too: NULLs compare equal here.
            models.UniqueConstraint(fields=["actor", "key"], name=DROP_REQUEST_KEY_CONSTRAINT, nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.key} -> lottery {self.lottery_id}"
