from django.apps import AppConfig

# The SMS settings staff may change in admin while workers run (core.live), with what each means.
LIVE_SETTINGS = {
    "SMS_FAILURE_RATE": ("share of messages the simulated gateway fails, 0 to 1", False, 0, 1),
    "SMS_LATENCY_MIN_MS": ("the simulated gateway's shortest time per message", True, 0, None),
    "SMS_LATENCY_MAX_MS": ("the simulated gateway's longest time per message", True, 0, None),
    "SMS_BATCH_LATENCY_MIN_MS": ("the simulated gateway's shortest time per batch", True, 0, None),
    "SMS_BATCH_LATENCY_MAX_MS": ("the simulated gateway's longest time per batch", True, 0, None),
    "SMS_MAX_ATTEMPTS": ("attempts per message before it is failed", True, 1, None),
}
# Those that inject anomalies (core.live's chaos switches: their own permission), with ANOMALY_SMS_FAILURE_ENABLED.
CHAOS_SWITCHES = {"SMS_FAILURE_RATE"}


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from core import live, tracing
        from notifications import metrics

        metrics.register()
        tracing.QUIET_TASKS.add("notifications.tasks.sweep_notifications")  # beat's sweep: no trace of its own
        # A promoted alternate hears of it like any winner (draws sits below and asks through ON_PROMOTED).
        from draws.services import ON_PROMOTED
        from notifications.services import promoted_alternate_notify

        ON_PROMOTED.append(promoted_alternate_notify)
        for name, (help_text, integer, low, high) in LIVE_SETTINGS.items():
            live.register(name, live.number_in(low, high, integer=integer), help_text, chaos=name in CHAOS_SWITCHES)
        live.register(
            "ANOMALY_SMS_FAILURE_ENABLED",
            live.boolean,
            "the simulated gateway fails a share SMS_FAILURE_RATE of the messages (true) or none (false)",
            chaos=True,
        )
