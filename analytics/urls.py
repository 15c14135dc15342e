"""The business metrics' API (under /api/v1/)."""

from django.urls import path

from analytics.apis import DailyMetricsApi, HourlyMetricsApi, ReconciliationApi

urlpatterns = [
    path("metrics/hourly", HourlyMetricsApi.as_view(), name="metrics-hourly"),
    path("metrics/daily", DailyMetricsApi.as_view(), name="metrics-daily"),
    path("metrics/reconciliation", ReconciliationApi.as_view(), name="metrics-reconciliation"),
]
