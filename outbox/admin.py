from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from kafka.errors import KafkaError

from core.admin import ReadOnlyAdmin, acting_player, staff_may
from outbox.inbox import dead_letters_replay
from outbox.models import REPLAY_DEAD_LETTER, REPLAY_OUTBOX_EVENT, ConsumerCounter, DeadLetter, OutboxEvent
from outbox.services import replay_failed


@admin.action(description="Replay selected parked (failed) events", permissions=["replay_outbox_event"])
def replay(modeladmin: "OutboxEventAdmin", request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
    count = replay_failed(event_ids=queryset.values_list("pk", flat=True), actor=acting_player(request))
    skipped = queryset.count() - count
    note = f" ({skipped} selected event(s) were not parked and are unchanged)" if skipped else ""
    modeladmin.message_user(request, f"{count} event(s) put back in line{note}.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """Read-only: events change only through the relay and the replay action."""

    list_display = ["id", "event_type", "key", "state", "attempts", "created_at", "published_at", "short_error"]
    list_filter = ["state", "event_type", "topic"]
    search_fields = ["=event_id", "=key"]
    date_hierarchy = "created_at"
    actions = [replay]
    show_full_result_count = False

    def has_replay_outbox_event_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, REPLAY_OUTBOX_EVENT)

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


@admin.action(description="Replay selected dead letters (once the cause is fixed)", permissions=["replay_dead_letter"])
def replay_dead_letters(modeladmin: "DeadLetterAdmin", request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
    try:
        outcomes = dead_letters_replay(ids=list(queryset.values_list("pk", flat=True)), actor=acting_player(request))
    except KafkaError as error:  # a replay that dead-letters again needs the broker
        modeladmin.message_user(request, f"Kafka is unavailable, nothing replayed: {error}", messages.ERROR)
        return
    summary = ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in sorted(outcomes.items()))
    modeladmin.message_user(request, f"Replayed: {summary or 'nothing'}.", messages.SUCCESS)


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["id", "consumer", "topic", "partition", "offset", "reason", "status", "created_at"]
    list_filter = ["status", "reason", "consumer"]
    search_fields = ["=offset", "error"]
    date_hierarchy = "created_at"
    actions = [replay_dead_letters]

    def has_replay_dead_letter_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, REPLAY_DEAD_LETTER)

    fields = readonly_fields = (
        "consumer",
        "topic",
        "partition",
        "offset",
        "reason",
        "error",
        "status",
        "created_at",
        "replayed_at",
        "headers",
        "value_text",
    )

    @admin.display(description="value")
    def value_text(self, letter: DeadLetter) -> str:
        return letter.value_text


@admin.register(ConsumerCounter)
class ConsumerCounterAdmin(ReadOnlyAdmin):
    """received = applied + duplicate + dead-lettered, per partition (a database constraint keeps it so)."""

    list_display = ["consumer", "topic", "partition", "received", "applied", "duplicate", "dead_lettered"]
    list_filter = ["consumer", "topic"]
