"""The lottery admin with its close actions and its drop form: closing draws and creating a drop stores a seed,
so it is registered on this floor."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from core.admin import acting_player, staff_may
from core.errors import ApplicationError
from lifecycle.services import drop_create, lottery_close
from lotteries.admin import LotteryAdmin
from lotteries.errors import InvalidLottery
from lotteries.models import CLOSE_LOTTERY, CREATE_DROP, FORCE_CLOSE_LOTTERY, Lottery, TransitionSource
from lotteries.services import drop_new

# A drop's terms, as the add form asks for them and drop_create takes them.
DROP_TERMS = ("title", "prize", "prize_quantity", "opens_at", "closes_at", "winners_count", "alternates_count")


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


class DropForm(forms.ModelForm[Lottery]):
    """Admin's "Add lottery" form: a drop's terms, checked by the rules ``drop_create`` applies."""

    winners_count = forms.IntegerField(min_value=1, required=False, help_text="Leave empty: the prize quantity.")

    class Meta:
        model = Lottery
        fields = DROP_TERMS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["opens_at"].initial = timezone.now
        self.fields["opens_at"].help_text = "Later than now: the drop is scheduled and opens then."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if data.get("winners_count") is None:
            data["winners_count"] = data["prize_quantity"]
        try:
            drop_new(**{term: data[term] for term in DROP_TERMS})
        except InvalidLottery as error:
            field = error.details.get("field")
            if field in DROP_TERMS:
                raise ValidationError({field: error.message}) from None
            raise ValidationError(error.message) from None
        return data


@admin.register(Lottery)
class LotteryCloseAdmin(LotteryAdmin):
    """Lotteries are read-only here, but for the close actions and the drop form (staff with ``create_drop``)."""

    actions = [close_due, close_forced]

    def has_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, CLOSE_LOTTERY)

    def has_force_close_lottery_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, FORCE_CLOSE_LOTTERY)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, CREATE_DROP)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs.update(form=DropForm, fields=DROP_TERMS)
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return DROP_TERMS if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else super().get_readonly_fields(request, obj)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return [] if obj is None else super().get_inlines(request, obj)

    def save_model(self, request: HttpRequest, obj: Lottery, form: Any, change: bool) -> None:
        """The add form's drop is created by the service (seed, commitment, event, timers), never by ``save()``."""
        if change:
            raise PermissionError("lotteries change only through the life-cycle services")
        created = drop_create(
            **{term: form.cleaned_data[term] for term in DROP_TERMS},
            source=TransitionSource.ADMIN,
            actor=acting_player(request),
        )
        for field in Lottery._meta.concrete_fields:  # the admin's own object, for its message and its log entry
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
