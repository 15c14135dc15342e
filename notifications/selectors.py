"""Reads of the delivery log: which batched sends stopped, for the sweep."""

from collections.abc import Sequence
from datetime import datetime

from django.db.models import Max, Q

from notifications.models import Notification


def _due(now: datetime) -> Q:
    """Pending past its backoff, or sending past its lease (its worker died)."""
    return Q(state=Notification.State.PENDING, next_attempt_at__lte=now) | Q(
        state=Notification.State.SENDING, lease_expires_at__lte=now
    )


def idle_batches(*, now: datetime, idle_since: datetime, batched_kinds: Sequence[str]) -> list[tuple[int, str]]:
    """(lottery id, kind) of batched kinds with messages due now and no message changed since ``idle_since``.

    A running chain of batches changes some of its messages at every batch;
    one that stopped (a lost task, a dead worker) leaves them all older.
    """
    groups = (
        Notification.objects.filter(_due(now), kind__in=batched_kinds)
        .order_by()
        .values_list("lottery_id", "kind")
        .distinct()
    )
    idle = []
    for lottery_id, kind in groups:
        latest = Notification.objects.filter(lottery_id=lottery_id, kind=kind).aggregate(latest=Max("updated_at"))
        if latest["latest"] is None or latest["latest"] <= idle_since:
            idle.append((lottery_id, kind))
    return idle
