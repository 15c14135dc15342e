"""Read side of lotteries."""

from datetime import date, datetime

from django.db.models import Count, Q, QuerySet

from lotteries.models import Lottery


def lotteries_due_ids(*, now: datetime) -> list[int]:
    """Lotteries to close and draw: open ones whose window ended (pools close when full instead),
    and any lottery left closed but not drawn (a full pool whose draw task was lost, say)."""
    window_ended = Q(state=Lottery.State.OPEN, closes_at__lte=now) & ~Q(kind=Lottery.Kind.POOL)
    return list(
        Lottery.objects.filter(window_ended | Q(state=Lottery.State.CLOSED))
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
