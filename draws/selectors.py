"""Read side of draws and awards."""

from datetime import date

from django.db.models import QuerySet

from draws.models import Draw, LotteryAward


def awards_of_day(*, day: date) -> QuerySet[LotteryAward]:
    """Awards of the lotteries belonging to ``day`` (the daily lottery of that date, drops closing that day)."""
    return LotteryAward.objects.filter(lottery__day=day).select_related("player", "lottery").order_by("lottery", "rank")


def awards_of_lottery(*, lottery_id: int) -> QuerySet[LotteryAward]:
    return LotteryAward.objects.filter(lottery_id=lottery_id).select_related("player", "lottery").order_by("rank")


def draw_get(*, draw_id: int) -> Draw | None:
    return Draw.objects.select_related("lottery").filter(pk=draw_id).first()
