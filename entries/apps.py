from django.apps import AppConfig


class EntriesConfig(AppConfig):
    name = "entries"

    def ready(self) -> None:
        from entries import lockout  # noqa: F401 (connects the lock-out metric to axes' signal)
