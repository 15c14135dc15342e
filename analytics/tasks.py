"""Beat's business-metrics tasks: thin, each calls one service."""

from celery import shared_task

from analytics.services import metrics_purge, metrics_refresh


@shared_task(ignore_result=True)
def refresh_business_metrics() -> int:
    """Beat, every METRICS_REFRESH_SECONDS: recompute the last METRICS_WINDOW_HOURS hours; returns their rows."""
    return metrics_refresh().rows


@shared_task(ignore_result=True)
def purge_business_metrics() -> int:
    """Beat, daily: drop what is older than METRICS_RETENTION_DAYS."""
    return metrics_purge()
