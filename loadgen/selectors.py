"""Read side of the load generator's ground truth."""

from datetime import datetime

from django.db.models import QuerySet

from loadgen.models import InjectedAnomaly


def anomalies_list(
    *,
    run: str | None = None,
    kind: str | None = None,
    lottery_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[InjectedAnomaly]:
    """The recorded anomalies, oldest first, narrowed by whichever of the filters are given."""
    anomalies = InjectedAnomaly.objects.order_by("id")
    if run is not None:
        anomalies = anomalies.filter(run=run)
    if kind is not None:
        anomalies = anomalies.filter(kind=kind)
    if lottery_id is not None:
        anomalies = anomalies.filter(lottery_id=lottery_id)
    if since is not None:
        anomalies = anomalies.filter(injected_at__gte=since)
    if until is not None:
        anomalies = anomalies.filter(injected_at__lt=until)
    return anomalies
