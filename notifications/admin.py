"""The delivery log in admin: every SMS with its state, filters, and the re-send action."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin, acting_player, staff_may
from core.errors import ApplicationError
from entries.phones import mask_phone
from notifications.models import RESEND_NOTIFICATION, Broadcast, GatewayMessage, Notification
from notifications.services import notification_resend


@admin.action(description="Send selected failed SMS again", permissions=["resend_notification"])
def resend(modeladmin: "NotificationAdmin", request: HttpRequest, queryset: QuerySet[Notification]) -> None:
    actor = acting_player(request)
    queued = 0
    for notification_id in queryset.values_list("pk", flat=True):
        try:
            notification_resend(notification_id=notification_id, actor=actor)
        except ApplicationError as error:
            modeladmin.message_user(request, f"SMS {notification_id}: {error.message}", messages.ERROR)
            continue
        queued += 1
    modeladmin.message_user(request, f"{queued} SMS queued to be sent again.", messages.SUCCESS)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Read-only: a notification changes only through the sends and the re-send action."""

    list_display = [
        "id",
        "kind",
        "masked_recipient",
        "lottery",
        "state",
        "attempts",
        "latency_ms",
        "gateway_message_id",
        "short_error",
        "created_at",
        "sent_at",
    ]
    list_filter = ["state", "kind", "lottery__kind", "created_at"]
    search_fields = ["=id", "=lottery__id", "=player__username", "=gateway_message_id"]
    list_select_related = ["lottery"]
    date_hierarchy = "created_at"
    actions = [resend]
    show_full_result_count = False
    fields = readonly_fields = (
        "kind",
        "lottery",
        "player",
        "award",
        "recipient",
        "body",
        "state",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "latency_ms",
        "gateway_message_id",
        "last_error",
        "resent_by",
        "resent_at",
        "created_at",
        "updated_at",
        "sent_at",
    )

    def has_resend_notification_permission(self, request: HttpRequest) -> bool:
        return staff_may(request, RESEND_NOTIFICATION)

    @admin.display(description="recipient")
    def masked_recipient(self, notification: Notification) -> str:
        return mask_phone(notification.recipient)

    @admin.display(description="last error")
    def short_error(self, notification: Notification) -> str:
        return notification.last_error[:80]


@admin.register(Broadcast)
class BroadcastAdmin(ReadOnlyAdmin):
    """Each broadcast's progress: sent, failed and remaining, as its batches record them."""

    list_display = ["lottery", "total", "sent", "failed", "remaining", "created_at", "finished_at"]
    list_select_related = ["lottery"]
    date_hierarchy = "created_at"
    fields = readonly_fields = ("lottery", "body", "total", "sent", "failed", "remaining", "created_at", "finished_at")


@admin.register(GatewayMessage)
class GatewayMessageAdmin(ReadOnlyAdmin):
    """What the local gateway accepted, as a provider's dashboard would list it."""

    list_display = ["gateway_message_id", "idempotency_key", "backend", "masked_recipient", "accepted_at"]
    list_filter = ["backend"]
    search_fields = ["=idempotency_key", "=gateway_message_id"]
    date_hierarchy = "accepted_at"
    show_full_result_count = False
    fields = readonly_fields = ("idempotency_key", "gateway_message_id", "backend", "recipient", "body", "accepted_at")

    @admin.display(description="recipient")
    def masked_recipient(self, message: GatewayMessage) -> str:
        return mask_phone(message.recipient)
