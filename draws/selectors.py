"""Read side of draws and awards."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Q, QuerySet

from draws.models import Draw, LotteryAward
from entries.models import Ballot
from lotteries.models import Lottery


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


# --- Statistics (GET /api/v1/stats) ------------------------------------------------


@dataclass
class LotteryStats:
    """Counts of one lottery's ballots and awards, or of many together (the platform's totals)."""

    entries: int = 0  # every ballot stored: valid, rejected and void
    valid: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Ballot.RejectionReason.values, 0))
    void: int = 0
    winners: int = 0  # awards made, a promoted alternate's included
    awards_claimed: int = 0
    awards_forfeited: int = 0

    def add_ballots(self, status: str, reason: str, count: int) -> None:
        self.entries += count
        if status == Ballot.Status.VALID:
            self.valid += count
        elif status == Ballot.Status.VOID:
            self.void += count
        else:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def add_awards(self, status: str, count: int) -> None:
        self.winners += count
        if status == LotteryAward.Status.CLAIMED:
            self.awards_claimed += count
        elif status == LotteryAward.Status.FORFEITED:
            self.awards_forfeited += count


def lottery_stats(*, lottery_ids: Sequence[int]) -> dict[int, LotteryStats]:
    """Each lottery's counts, in two grouped queries whatever the number of lotteries."""
    stats = {lottery_id: LotteryStats() for lottery_id in lottery_ids}
    ballots = (
        Ballot.objects.filter(lottery_id__in=lottery_ids)
        .order_by()
        .values_list("lottery_id", "status", "rejection_reason")
        .annotate(n=Count("id"))
    )
    for lottery_id, status, reason, count in ballots:
        stats[lottery_id].add_ballots(status, reason, count)
    awards = (
        LotteryAward.objects.filter(lottery_id__in=lottery_ids)
        .order_by()
        .values_list("lottery_id", "status")
        .annotate(n=Count("id"))
    )
    for lottery_id, status, count in awards:
        stats[lottery_id].add_awards(status, count)
    return stats


def lottery_stats_totals(*, lotteries: QuerySet[Lottery]) -> tuple[int, LotteryStats]:
    """How many lotteries ``lotteries`` holds, and their counts added up (PostgreSQL adds them)."""
    totals = LotteryStats()
    chosen = lotteries.order_by().values("id")
    for status, reason, count in (
        Ballot.objects.filter(lottery_id__in=chosen)
        .order_by()
        .values_list("status", "rejection_reason")
        .annotate(n=Count("id"))
    ):
        totals.add_ballots(status, reason, count)
    for status, count in (
        LotteryAward.objects.filter(lottery_id__in=chosen).order_by().values_list("status").annotate(n=Count("id"))
    ):
        totals.add_awards(status, count)
    return lotteries.order_by().count(), totals
