from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm
from django.contrib.auth.models import Group
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from core.admin import ReadOnlyAdmin, ReadOnlyInline, acting_player, reason_action, staff_may
from entries.errors import InvalidPhoneNumber
from entries.models import (
    BAN_PLAYER,
    CHANGE_SMS_CONSENT,
    UNBAN_PLAYER,
    Ballot,
    ConsentSource,
    Player,
    PlayerBanEvent,
    SmsConsentEvent,
)
from entries.phones import mask_phone, normalize_phone_number
from entries.services import player_ban, player_unban, sms_consent_set

# Fields that make or unmake staff: only a superuser may change them.
PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


class PlayerCreationForm(UserCreationForm[Player]):
    class Meta(UserCreationForm.Meta):
        model = Player
        fields = ("username", "phone_number", "external_account_id")


class PlayerChangeForm(UserChangeForm[Player]):
    class Meta(UserChangeForm.Meta):
        model = Player


def _ban(request: HttpRequest, player: Model, reason: str) -> bool:
    return player_ban(player_id=player.pk, reason=reason, actor=acting_player(request)) is not None


def _unban(request: HttpRequest, player: Model, reason: str) -> bool:
    return player_unban(player_id=player.pk, reason=reason, actor=acting_player(request)) is not None


def _opt_in(request: HttpRequest, player: Model, reason: str) -> bool:
    return sms_consent_set(
        player_id=player.pk, opted_in=True, source=ConsentSource.ADMIN, actor=acting_player(request), note=reason
    )


def _opt_out(request: HttpRequest, player: Model, reason: str) -> bool:
    return sms_consent_set(
        player_id=player.pk, opted_in=False, source=ConsentSource.ADMIN, actor=acting_player(request), note=reason
    )


class SmsConsentEventInline(ReadOnlyInline[SmsConsentEvent, Player]):
    model = SmsConsentEvent
    fk_name = "player"
    fields = ("created_at", "action", "source", "masked_phone", "note", "actor")

    @admin.display(description="phone number")
    def masked_phone(self, event: SmsConsentEvent) -> str:
        return mask_phone(event.phone_number)


class BanEventInline(ReadOnlyInline[PlayerBanEvent, Player]):
    model = PlayerBanEvent
    fk_name = "player"
    fields = (
        "created_at",
        "action",
        "reason",
        "actor",
        "voided_ballots",
    )


SMS_CONSENT_FIELDS = ("sms_opt_in_at", "sms_opt_in_source", "sms_opt_out_at", "sms_opt_out_source")


@admin.register(Player)
class PlayerAdmin(UserAdmin[Player]):
    form = PlayerChangeForm
    add_form = PlayerCreationForm
    list_display = [
        "username",
        "masked_phone",
        "external_account_id",
        "is_staff",
        "is_banned",
        "banned_at",
        "sms_opt_in_at",
    ]
    list_filter = ["is_banned", "is_staff", "is_active", "sms_opt_in_source"]
    search_fields = ["username", "email", "phone_number", "external_account_id"]
    readonly_fields = [
        "is_banned",
        "banned_at",
        "ban_reason",
        "banned_by",
        "last_login",
        "date_joined",
        *SMS_CONSENT_FIELDS,
    ]
    fieldsets = (
        *UserAdmin.fieldsets,  # type: ignore[misc]
        ("Player", {"fields": ("phone_number", "external_account_id")}),
        (
            "Ban (changed only by the ban and unban actions)",
            {"fields": ("is_banned", "banned_at", "ban_reason", "banned_by")},
        ),
        ("SMS drop announcements (changed only by the opt-in and opt-out actions)", {"fields": SMS_CONSENT_FIELDS}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "phone_number", "external_account_id", "password1", "password2"),
            },
        ),
    )
    inlines = [BanEventInline, SmsConsentEventInline]
    actions = [
        reason_action(
            description="Ban selected players",
            apply=_ban,
            done="{count} player(s) banned; their ballots in lotteries not yet drawn are void.",
            permission="ban_player",
        ),
        reason_action(
            description="Unban selected players",
            apply=_unban,
            done="{count} player(s) unbanned.",
            permission="unban_player",
        ),
        reason_action(
            description="Record SMS opt-in to drop announcements",
            apply=_opt_in,
            done="{count} player(s) opted in to drop announcements by SMS.",
            permission="change_sms_consent",
        ),
        reason_action(
            description="Record SMS opt-out of drop announcements",
            apply=_opt_out,
            done="{count} player(s) opted out of drop announcements by SMS.",
            permission="change_sms_consent",
        ),
    ]

    @admin.display(description="phone number", ordering="phone_number")
    def masked_phone(self, player: Player) -> str:
        return mask_phone(player.phone_number)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Player], search_term: str
    ) -> tuple[QuerySet[Player], bool]:
        """A search term that reads as a phone number also finds it as stored (E.164), however it was typed."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            number = normalize_phone_number(search_term)
        except InvalidPhoneNumber:
            return results, may_have_duplicates
        if number:
            results |= queryset.filter(phone_number=number)
        return results, may_have_duplicates

    def has_change_sms_consent_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, CHANGE_SMS_CONSENT)

    def has_ban_player_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, BAN_PLAYER)

    def has_unban_player_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, UNBAN_PLAYER)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += PRIVILEGE_FIELDS
        return fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Another staff member's account (its password too) is a superuser's to change."""
        return super().has_change_permission(request, obj) and self._may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_manage(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Bulk delete would not ask about each account (staff among them): accounts are deactivated, not deleted.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @staticmethod
    def _may_manage(request: HttpRequest, obj: Any) -> bool:
        if obj is None or request.user.is_superuser or obj.pk == request.user.pk:
            return True
        return not (obj.is_staff or obj.is_superuser)


@admin.register(Ballot)
class BallotAdmin(ReadOnlyAdmin):
    list_display = ["id", "lottery", "player", "status", "rejection_reason", "created_at"]
    list_filter = ["status", "rejection_reason"]
    search_fields = ["=id", "=lottery__id", "player__username"]
    list_select_related = ["lottery", "player"]
    raw_id_fields = ["lottery", "player"]
    show_full_result_count = False


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class SuperuserTokenAdmin(TokenAdmin):
    """API tokens are credentials: only superusers see them, whatever permissions other staff hold."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


admin.site.unregister(Group)


@admin.register(Group)
class SuperuserGroupAdmin(GroupAdmin):
    """A group's permissions are its members' permissions: only superusers create, change or delete groups.

    Staff with ``view_group`` (compliance) still see them. Without this, a staff
    member holding ``change_group`` could add any permission to a group they
    belong to, and so to themselves.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_add_permission(request)
