from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from core.currencies import format_money
from draws.models import DRAW_PUBLIC_FIELDS, Draw, DrawVerificationRecord, LotteryAward
from draws.services import draw_verify


def _win_sum(award: LotteryAward) -> str | None:
    """The award's amount with its currency's minor digits ("27.00" EUR), none for a prize-only award."""
    return None if award.win_sum is None else format_money(award.win_sum, award.currency)


# What an award gave and when, as every award list here ends (the win sum through ``win_sum_shown``).
AWARD_OUTCOME_FIELDS = ("prize", "win_sum_shown", "currency", "status", "created_at")
# A drop's award: its claim window, and why it was forfeited or whom it replaces.
AWARD_CLAIM_FIELDS = (
    "claim_deadline",
    "claimed_at",
    "forfeited_at",
    "forfeit_reason",
    "promoted_from",
    "alternate_rank",
)


class AwardInline(ReadOnlyInline[LotteryAward, Draw]):
    model = LotteryAward
    fields = ("rank", "ballot", "player", *AWARD_OUTCOME_FIELDS, "forfeit_reason", "promoted_from")

    @admin.display(description="win sum")
    def win_sum_shown(self, award: LotteryAward) -> str | None:
        return _win_sum(award)


@admin.action(description="Verify selected draws (recompute from the ballots)")
def verify(modeladmin: "DrawAdmin", request: HttpRequest, queryset: QuerySet[Draw]) -> None:
    for draw in queryset:
        result = draw_verify(draw=draw)
        if result.matches:
            modeladmin.message_user(request, f"{draw}: verified, the recomputed result matches.", messages.SUCCESS)
        else:
            modeladmin.message_user(
                request,
                f"{draw}: MISMATCH (commitment {result.commitment_matches}, entries "
                f"{result.entries_digest_matches}, winners {result.winners_match}, "
                f"alternates {result.alternates_match}).",
                messages.ERROR,
            )


@admin.register(Draw)
class DrawAdmin(ReadOnlyAdmin):
    list_display = ["id", "lottery", "algorithm_version", "entries_count", "winners_count", "drawn_at"]
    list_filter = ["algorithm_version"]
    search_fields = ["=id", "=lottery__id"]
    list_select_related = ["lottery"]
    actions = [verify]
    inlines = [AwardInline]
    fields = readonly_fields = (
        "lottery",
        *DRAW_PUBLIC_FIELDS,
        "verification_link",
        "stored_verification",
    )

    @admin.display(description="public verification")
    def verification_link(self, draw: Draw) -> str:
        url = reverse("draw-verification", args=[draw.pk])
        return format_html('<a href="{}">{}</a> (or <code>manage.py verify_draw {}</code>)', url, url, draw.pk)

    @admin.display(description="stored verification")
    def stored_verification(self, draw: Draw) -> str:
        """What the public endpoint serves: the recomputation made once, on its first request."""
        record = DrawVerificationRecord.objects.filter(draw=draw).first()
        if record is None:
            return "not computed yet (the first verification request computes it)"
        verdict = "matches" if record.matches else "MISMATCH"
        return f"{verdict}, computed {record.computed_at:%Y-%m-%d %H:%M:%S %Z}"


@admin.register(LotteryAward)
class LotteryAwardAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "lottery",
        "rank",
        "player",
        "ballot",
        *AWARD_OUTCOME_FIELDS,
        "forfeit_reason",
        "promoted_from",
    ]
    list_filter = ["status", "forfeit_reason"]
    search_fields = ["=id", "=lottery__id", "player__username"]
    list_select_related = ["lottery", "player", "ballot"]
    fields = readonly_fields = (
        "lottery",
        "draw",
        "ballot",
        "player",
        "rank",
        *AWARD_OUTCOME_FIELDS,
        *AWARD_CLAIM_FIELDS,
    )

    @admin.display(description="win sum", ordering="win_sum")
    def win_sum_shown(self, award: LotteryAward) -> str | None:
        return _win_sum(award)
