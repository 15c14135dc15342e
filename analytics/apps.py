from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Business metrics by the hour, their reconciliation, and the operations page: the top floor, reading all."""

    name = "analytics"
