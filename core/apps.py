from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The shared kernel on the ground floor: errors, API plumbing, permissions, database helpers, admin bases.

    It imports no other app of the platform; every app may import it.
    """

    name = "core"

    def ready(self) -> None:
        from django.urls import register_converter
        from django_structlog.celery.signals import modify_context_before_task_publish

        from core.converters import DatabaseIdConverter
        from core.logs import task_context_to_send

        register_converter(DatabaseIdConverter, "id")  # before any app's urls use <id:...>
        modify_context_before_task_publish.connect(task_context_to_send)
