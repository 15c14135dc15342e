"""The lottery admin with its close actions: closing draws, so it is registered on this floor."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import acting_player, staff_may
from core.errors import ApplicationError
from lifecycle.services import lottery_close
from lotteries.admin import LotteryAdmin
from lotteries.models import CLOSE_LOTTERY, FORCE_CLOSE_LOTTERY, Lottery, TransitionSource


def _close(modeladmin: "LotteryCloseAdmin", request: HttpRequest, queryset: QuerySet[Lottery], *, force: bool) -> None:
    actor = acting_player(request)
    for lottery in queryset:
        try:
            outcome = lottery_close(lottery_id=lottery.pk, source=TransitionSource.ADMIN, actor=actor, force=force)
        except ApplicationError as error:
            modeladmin.message_user(request, f"{lottery}: {error.message}", messages.ERROR)
            continue
        state = outcome.lottery.state
        note = f"now {state}" if outcome.changed else f"already {state}, unchanged"
        modeladmin.message_user(request, f"{lottery.title}: {note}.", messages.SUCCESS)


@admin.action(description="Close and draw selected lotteries (window ended)", permissions=["close_lottery"])
def close_due(modeladmin: "LotteryCloseAdmin", request: HttpRequest, queryset: QuerySet[Lottery]) -> None:
    _close(modeladmin, request, queryset, force=False)


@admin.action(
    description="Force close and draw now, before the window ends (recorded)",
    permissions=["close_lottery", "force_close_lottery"],
)
def close_forced(modeladmin: "LotteryCloseAdmin", request: HttpRequest, queryset: QuerySet[Lottery]) -> None:
    _close(modeladmin, request, queryset, force=True)


@admin.register(Lottery)
class LotteryCloseAdmin(LotteryAdmin):
    actions = [close_due, close_forced]

    def has_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, CLOSE_LOTTERY)

    def has_force_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, FORCE_CLOSE_LOTTERY)
