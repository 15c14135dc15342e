"""Read side of lotteries."""

from datetime import date, datetime

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Least

from lotteries.models import Lottery, LotteryTransition


def lotteries_due_ids(*, now: datetime) -> list[int]:
    """Lotteries to close and draw: open ones whose window ended (pools close when full instead),
    and any lottery left closed but not drawn (a full pool whose draw task was lost, say)."""
    window_ended = Q(state=Lottery.State.OPEN, closes_at__lte=now) & ~Q(kind=Lottery.Kind.POOL)
    return list(
        Lottery.objects.filter(window_ended | Q(state=Lottery.State.CLOSED))
        .order_by("closes_at", "id")
        .values_list("id", flat=True)
    )


def lotteries_due_since(*, now: datetime) -> list[tuple[str, datetime]]:
    """Each lottery ``lotteries_due_ids`` would draw, as (kind, the moment it became due): its window's end,
    or its close when it closed earlier (a full pool)."""
    closed_at = LotteryTransition.objects.filter(lottery=OuterRef("pk"), to_state=Lottery.State.CLOSED).values(
        "created_at"
    )[:1]
    window_ended = Q(state=Lottery.State.OPEN, closes_at__lte=now) & ~Q(kind=Lottery.Kind.POOL)
    rows = (
        Lottery.objects.filter(window_ended | Q(state=Lottery.State.CLOSED))
        .annotate(due_since=Least("closes_at", Coalesce(Subquery(closed_at), "closes_at")))
        .order_by()
        .values_list("kind", "due_since")
    )
    return list(rows)


def lotteries_to_open_ids(*, now: datetime) -> list[int]:
    """Scheduled lotteries whose ``opens_at`` has come: to open now."""
    return list(
        Lottery.objects.filter(state=Lottery.State.SCHEDULED, opens_at__lte=now)
        .order_by("opens_at", "id")
        .values_list("id", flat=True)
    )


def lotteries_with_moments_before(*, now: datetime, until: datetime) -> list[Lottery]:
    """Lotteries with a moment in ``(now, until]``: a scheduled one's ``opens_at``, or the ``closes_at``
    of an open one that closes on time (every kind but pools, which close when full)."""
    opening = Q(state=Lottery.State.SCHEDULED, opens_at__gt=now, opens_at__lte=until)
    closing = Q(state=Lottery.State.OPEN, closes_at__gt=now, closes_at__lte=until) & ~Q(kind=Lottery.Kind.POOL)
    return list(
        Lottery.objects.filter(opening | closing).only("id", "kind", "state", "opens_at", "closes_at").order_by("id")
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
