from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The shared kernel on the ground floor: errors, API plumbing, permissions, database helpers, admin bases.

    It imports no other app of the platform; every app may import it.
    """

    name = "core"

    def ready(self) -> None:
        from django.urls import register_converter

        from core.converters import DatabaseIdConverter

        register_converter(DatabaseIdConverter, "id")  # before any app's urls use <id:...>
