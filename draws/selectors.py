"""Read side of draws and awards."""

from datetime import date, datetime

from django.db.models import Q, QuerySet

from draws.models import Draw, LotteryAward


def awards_of_day(*, day: date) -> QuerySet[LotteryAward]:
    """Awards of the lotteries belonging to ``day`` (the daily lottery of that date, drops closing that day)."""
    return (
        LotteryAward.objects.filter(lottery__day=day)
        .select_related("player", "lottery")
        .order_by("lottery", "rank", "id")
    )


def awards_of_lottery(*, lottery_id: int) -> QuerySet[LotteryAward]:
    return LotteryAward.objects.filter(lottery_id=lottery_id).select_related("player", "lottery").order_by("rank", "id")


def awards_to_forfeit(*, now: datetime) -> list[tuple[int, str]]:
    """Drop awards still unclaimed whose winner is banned, or whose claim window ended: (id, reason), oldest first."""
    standing = LotteryAward.objects.filter(status=LotteryAward.Status.PLAYED_OUT, claim_deadline__isnull=False)
    due = standing.filter(Q(player__is_banned=True) | Q(claim_deadline__lte=now)).order_by("id")
    return [
        (award_id, LotteryAward.ForfeitReason.BANNED if banned else LotteryAward.ForfeitReason.UNCLAIMED)
        for award_id, banned in due.values_list("id", "player__is_banned")
    ]


def draw_get(*, draw_id: int) -> Draw | None:
    return Draw.objects.select_related("lottery").filter(pk=draw_id).first()
