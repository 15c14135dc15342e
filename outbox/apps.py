from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"

    def ready(self) -> None:
        from core import tracing
        from outbox import metrics

        metrics.register()
        # Beat's sweep every few seconds starts no trace (a kick from a request still carries its trace).
        tracing.QUIET_TASKS.add("outbox.tasks.relay_outbox")
