"""Shared admin pieces: read-only bases, permission checks for actions, an action that asks for a reason first,
and the live settings' page.

Every staff action names its permission (``allowed_permissions``), so Django
hides it from, and refuses it to, staff without it; the service it calls
checks the same permission again.
"""

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from django import forms
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import AbstractUser
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core import live
from core.authorization import may
from core.errors import ApplicationError
from core.models import LiveSetting

_ChildT = TypeVar("_ChildT", bound=Model)
_ParentT = TypeVar("_ParentT", bound=Model)


def acting_player(request: HttpRequest) -> AbstractUser | None:
    """The staff member behind an admin request, for audit records."""
    user = request.user
    return user if isinstance(user, AbstractUser) and user.is_authenticated else None


def staff_may(request: HttpRequest, permission: str) -> bool:
    """True when the staff member behind an admin request holds ``permission``."""
    user = acting_player(request)
    return user is not None and may(user, permission)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), strip=True)


def reason_action(
    *,
    description: str,
    apply: Callable[[HttpRequest, Model, str], bool],
    done: str,
    permission: str,
) -> Callable[[admin.ModelAdmin[Any], HttpRequest, QuerySet[Any]], HttpResponse | None]:
    """Build an action that shows a form for a reason, then calls ``apply`` per object.

    ``apply`` returns True when it changed the object; domain errors are shown
    per object and do not stop the others. ``permission`` is the codename the
    model admin answers for with ``has_<permission>_permission``.
    """

    def action(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            changed = 0
            for obj in queryset:
                try:
                    changed += bool(apply(request, obj, form.cleaned_data["reason"]))
                except ApplicationError as error:
                    modeladmin.message_user(request, f"{obj}: {error.message}", messages.ERROR)
            modeladmin.message_user(request, done.format(count=changed), messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/reason_action.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": description,
                "objects": queryset,
                "form": form,
                "action": request.POST.get("action", ""),
                "opts": modeladmin.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    action.short_description = description  # type: ignore[attr-defined]
    action.allowed_permissions = (permission,)  # type: ignore[attr-defined]
    action.__name__ = description.lower().replace(" ", "_")
    return action


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """For records that change only through services (draws, awards, ballots, the outbox): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline[_ChildT, _ParentT]):
    """Rows shown on their parent's page (awards, ban events, transitions): never added or deleted there.

    A subclass lists its ``fields`` once; they are its ``readonly_fields`` too.
    """

    extra = 0
    can_delete = False
    fields: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.readonly_fields = cls.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LiveSettingForm(forms.ModelForm[LiveSetting]):
    name = forms.ChoiceField(choices=())
    # Set by LiveSettingAdmin.get_form for the staff member at hand: may they set chaos switches?
    may_set_chaos: ClassVar[bool] = False

    class Meta:
        model = LiveSetting
        fields = ["name", "value"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name_field = self.fields.get("name")
        if not self.instance._state.adding:  # a stored setting keeps its name; only its value changes
            self.fields.pop("name", None)
        elif isinstance(name_field, forms.ChoiceField):
            name_field.choices = [
                (name, f"{name}: {spec.help}")
                for name, spec in sorted(live.REGISTRY.items())
                if self.may_set_chaos or not spec.chaos
            ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name = cleaned.get("name") or self.instance.name
        if name and live.is_chaos_switch(name) and not self.may_set_chaos:
            raise forms.ValidationError(f"{name} is a chaos switch: setting it needs {live.CHANGE_CHAOS_SWITCH}.")
        if name and "value" in cleaned:
            live.validate(name, cleaned["value"])
        return cleaned


@admin.register(LiveSetting)
class LiveSettingAdmin(admin.ModelAdmin[LiveSetting]):
    """Values over the environment's, seen by every process within LIVE_SETTINGS_REFRESH_SECONDS; delete to go back."""

    form = LiveSettingForm
    list_display = ["name", "value", "environment_value", "chaos_switch", "updated_at", "updated_by"]
    readonly_fields = ["updated_at", "updated_by"]

    @admin.display(description="environment's value")
    def environment_value(self, setting: LiveSetting) -> str:
        return str(getattr(django_settings, setting.name, ""))

    @admin.display(description="chaos switch", boolean=True)
    def chaos_switch(self, setting: LiveSetting) -> bool:
        return live.is_chaos_switch(setting.name)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"may_set_chaos": staff_may(request, live.CHANGE_CHAOS_SWITCH)})

    def _chaos_refused(self, request: HttpRequest, obj: LiveSetting | None) -> bool:
        """A chaos switch's row, for a staff member without the chaos permission: they may look, not change."""
        return obj is not None and live.is_chaos_switch(obj.name) and not staff_may(request, live.CHANGE_CHAOS_SWITCH)

    def has_change_permission(self, request: HttpRequest, obj: LiveSetting | None = None) -> bool:
        return super().has_change_permission(request, obj) and not self._chaos_refused(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: LiveSetting | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._chaos_refused(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: LiveSetting | None = None) -> list[str]:
        return ["name", *self.readonly_fields] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: LiveSetting, form: Any, change: bool) -> None:
        obj.updated_by = acting_player(request)  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        live.forget()

    def delete_model(self, request: HttpRequest, obj: LiveSetting) -> None:
        super().delete_model(request, obj)
        live.forget()
