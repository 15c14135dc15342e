from django.contrib import admin

from core.admin import ReadOnlyAdmin
from core.currencies import format_money
from pools.models import PoolGame, Stake


@admin.register(PoolGame)
class PoolGameAdmin(admin.ModelAdmin[PoolGame]):
    """Pool size and payout per game; takes effect for the next pool a game opens."""

    list_display = ["game_id", "pool_size", "payout_ratio", "updated_at"]
    search_fields = ["game_id"]


@admin.register(Stake)
class StakeAdmin(ReadOnlyAdmin):
    list_display = ["stake_id", "player", "game_id", "amount_shown", "currency", "lottery", "entered", "occurred_at"]
    list_filter = ["currency"]
    search_fields = ["=stake_id", "=game_id", "player__username"]
    list_select_related = ["player", "lottery"]
    raw_id_fields = ["player", "lottery", "ballot"]
    show_full_result_count = False
    fields = readonly_fields = (
        "stake_id",
        "player",
        "game_id",
        "amount_shown",
        "currency",
        "lottery",
        "ballot",
        "occurred_at",
        "created_at",
    )

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, stake: Stake) -> str:
        return format_money(stake.amount, stake.currency)

    @admin.display(boolean=True, description="entered the draw")
    def entered(self, stake: Stake) -> bool:
        return stake.ballot_id is not None
