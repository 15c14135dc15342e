from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin import acting_player, staff_may
from core.currencies import format_money
from core.errors import ApplicationError
from lotteries.models import CLOSE_LOTTERY, FORCE_CLOSE_LOTTERY, Lottery, LotteryTransition, PoolGame, TransitionSource
from lotteries.services import lottery_close


class TransitionInline(admin.TabularInline[LotteryTransition, Lottery]):
    model = LotteryTransition
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "from_state",
        "to_state",
        "source",
        "actor",
        "forced",
        "note",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _close(modeladmin: "LotteryAdmin", request: HttpRequest, queryset: QuerySet[Lottery], *, force: bool) -> None:
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
def close_due(modeladmin: "LotteryAdmin", request: HttpRequest, queryset: QuerySet[Lottery]) -> None:
    _close(modeladmin, request, queryset, force=False)


@admin.action(
    description="Force close and draw now, before the window ends (recorded)",
    permissions=["close_lottery", "force_close_lottery"],
)
def close_forced(modeladmin: "LotteryAdmin", request: HttpRequest, queryset: QuerySet[Lottery]) -> None:
    _close(modeladmin, request, queryset, force=True)


@admin.register(Lottery)
class LotteryAdmin(admin.ModelAdmin[Lottery]):
    """Lotteries change state only through the life-cycle service: the form is read-only."""

    list_display = ["id", "title", "kind", "state", "day", "closes_at", "valid", "rejected", "void", "draw_link"]
    list_filter = ["kind", "state", "day"]
    search_fields = ["=id", "title"]
    date_hierarchy = "day"
    inlines = [TransitionInline]
    actions = [close_due, close_forced]
    fields = readonly_fields = (
        "kind",
        "state",
        "title",
        "day",
        "opens_at",
        "closes_at",
        "prize",
        "winners_count",
        "seed_commitment",
        "game_id",
        "currency",
        "pool_size",
        "pot_shown",
        "payout_ratio",
        "valid",
        "rejected",
        "void",
        "draw_link",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lottery]:
        return (
            super()
            .get_queryset(request)
            .select_related("draw")
            .annotate(
                valid_count=Count("ballots", filter=Q(ballots__status="valid")),
                rejected_count=Count("ballots", filter=Q(ballots__status="rejected")),
                void_count=Count("ballots", filter=Q(ballots__status="void")),
            )
        )

    @admin.display(description="valid ballots", ordering="valid_count")
    def valid(self, lottery: Any) -> int:
        return int(lottery.valid_count)

    @admin.display(description="rejected", ordering="rejected_count")
    def rejected(self, lottery: Any) -> int:
        return int(lottery.rejected_count)

    @admin.display(description="void", ordering="void_count")
    def void(self, lottery: Any) -> int:
        return int(lottery.void_count)

    @admin.display(description="pot")
    def pot_shown(self, lottery: Lottery) -> str | None:
        """A pool's staked pot with its currency's minor digits; none for lotteries without a currency."""
        return format_money(lottery.pot, lottery.currency) if lottery.currency else None

    @admin.display(description="draw")
    def draw_link(self, lottery: Lottery) -> str:
        draw = getattr(lottery, "draw", None)
        if draw is None:
            return "-"
        return format_html('<a href="{}">draw {}</a>', reverse("admin:draws_draw_change", args=[draw.pk]), draw.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, CLOSE_LOTTERY)

    def has_force_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, FORCE_CLOSE_LOTTERY)


@admin.register(PoolGame)
class PoolGameAdmin(admin.ModelAdmin[PoolGame]):
    """Pool size and payout per game; takes effect for the next pool a game opens."""

    list_display = ["game_id", "pool_size", "payout_ratio", "updated_at"]
    search_fields = ["game_id"]
