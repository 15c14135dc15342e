from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyInline
from core.currencies import format_money
from lotteries.models import LOTTERY_PUBLIC_FIELDS, Lottery, LotteryTransition


class TransitionInline(ReadOnlyInline[LotteryTransition, Lottery]):
    model = LotteryTransition
    fields = (
        "created_at",
        "from_state",
        "to_state",
        "source",
        "actor",
        "forced",
        "note",
    )


class LotteryAdmin(admin.ModelAdmin[Lottery]):
    """Lotteries change state only through the life-cycle services: the form is read-only.

    Registered by ``lifecycle.admin``, which adds the close actions (closing
    draws, and the draws app sits above this one).
    """

    list_display = [
        "id",
        "title",
        "kind",
        "state",
        "day",
        "opens_at",
        "closes_at",
        "valid",
        "rejected",
        "void",
        "draw_link",
    ]
    list_filter = ["kind", "state", "day"]
    search_fields = ["=id", "title"]
    date_hierarchy = "day"
    inlines = [TransitionInline]
    fields = readonly_fields = (
        *LOTTERY_PUBLIC_FIELDS,
        "game_id",
        "currency",
        "pool_size",
        "pot_shown",
        "payout_ratio",
        "valid",
        "rejected",
        "void",
        "draw_link",
        "unawarded_quantity",
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

    @admin.display(description="unawarded quantity")
    def unawarded_quantity(self, lottery: Lottery) -> int | str:
        """Units of the prize the draw gave no winner (fewer valid entries than the quantity)."""
        draw = getattr(lottery, "draw", None)
        return "-" if draw is None else int(draw.unawarded_quantity)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
