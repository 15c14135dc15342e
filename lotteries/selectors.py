"""Read side of lotteries."""

from datetime import date, datetime

from django.db.models import Count, Q, QuerySet

from lotteries.models import Lottery


def lotteries_due_ids(*, now: datetime) -> list[int]:
    """Lotteries to close and draw: window ended, not drawn yet (pools close when full instead)."""
    return list(
        Lottery.objects.filter(state__in=[Lottery.State.OPEN, Lottery.State.CLOSED], closes_at__lte=now)
        .exclude(kind=Lottery.Kind.POOL)
        .order_by("closes_at", "id")
        .values_list("id", flat=True)
    )


def lotteries_of_day_ids(*, day: date) -> list[int]:
    """The daily lottery of ``day`` and the drops whose window ends that day."""
    return list(
        Lottery.objects.filter(day=day)
        .exclude(kind=Lottery.Kind.POOL)
        .order_by("closes_at", "id")
        .values_list("id", flat=True)
    )


def lottery_exists(*, lottery_id: int) -> bool:
    return Lottery.objects.filter(pk=lottery_id).exists()


def lottery_list() -> QuerySet[Lottery]:
    # Explicit order: the GROUP BY of the annotation drops Meta.ordering, and pages need a stable order.
    return (
        Lottery.objects.annotate(valid_ballots=Count("ballots", filter=Q(ballots__status="valid")))
        .select_related("draw")
        .order_by("-day", "-id")
    )


def lottery_detail(*, lottery_id: int) -> Lottery | None:
    return lottery_list().prefetch_related("transitions", "awards__player").filter(pk=lottery_id).first()
