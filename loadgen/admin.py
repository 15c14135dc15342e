"""The ground truth in admin: every injected anomaly, read-only (the generator and the platform write them)."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from loadgen.models import InjectedAnomaly


@admin.register(InjectedAnomaly)
class InjectedAnomalyAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "run", "lottery", "injected_at", "simulated_at", "served"]
    list_filter = ["kind", "injected_at"]
    search_fields = ["run", "=lottery__id"]
    list_select_related = ["lottery"]
    readonly_fields = [field.name for field in InjectedAnomaly._meta.fields]
