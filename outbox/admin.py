from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.models import OutboxEvent
from outbox.services import replay_failed


@admin.action(description="Replay selected parked (failed) events")
def replay(modeladmin: "OutboxEventAdmin", request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
    count = replay_failed(event_ids=queryset.values_list("pk", flat=True))
    skipped = queryset.count() - count
    note = f" ({skipped} selected event(s) were not parked and are unchanged)" if skipped else ""
    modeladmin.message_user(request, f"{count} event(s) put back in line{note}.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin[OutboxEvent]):
    """Read-only: events change only through the relay and the replay action."""

    list_display = ["id", "event_type", "key", "state", "attempts", "created_at", "published_at", "short_error"]
    list_filter = ["state", "event_type", "topic"]
    search_fields = ["=event_id", "=key"]
    date_hierarchy = "created_at"
    actions = [replay]
    show_full_result_count = False
    fields = readonly_fields = (
        "event_id",
        "event_type",
        "topic",
        "message_type",
        "key",
        "state",
        "attempts",
        "last_error",
        "created_at",
        "published_at",
        "headers",
        "value",
    )

    @admin.display(description="last error")
    def short_error(self, event: OutboxEvent) -> str:
        return event.last_error[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
