"""Prometheus metrics of the SMS notifications.

Counters and the latency histogram count this process's own sends (the
notifications worker's); the backlog is read from the database when
Prometheus scrapes web's /metrics, the same truth whichever worker did the work.
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.prometheus import platform_collector
from notifications.models import Notification

logger = logging.getLogger(__name__)

messages_total = Counter(
    "lottery_sms_messages_total",
    "SMS send attempts by kind and outcome (sent, already_at_gateway, retried, failed)",
    ["kind", "outcome"],
)
send_latency = Histogram(
    "lottery_sms_send_latency_seconds",
    "Time the gateway took to accept a sent SMS (a batch's time for batched kinds)",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
)


class BacklogCollector(Collector):
    NAME = "lottery_sms_backlog"
    DOCUMENTATION = "SMS not yet sent or failed, by kind and state (pending, sending), and failed ones"

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["kind", "state"])

    def collect(self) -> Iterator[Metric]:
        waiting = [Notification.State.PENDING, Notification.State.SENDING, Notification.State.FAILED]
        try:
            rows = list(
                Notification.objects.filter(state__in=waiting)
                .order_by()
                .values("kind", "state")
                .annotate(n=Count("id"))
            )
        except DatabaseError as error:
            logger.warning("SMS metrics unavailable", exc_info=error)
            return
        family = GaugeMetricFamily(self.NAME, self.DOCUMENTATION, labels=["kind", "state"])
        counts = {(row["kind"], row["state"]): row["n"] for row in rows}
        for kind in Notification.Kind.values:
            for state in waiting:
                family.add_metric([kind, state], float(counts.get((kind, state), 0)))
        yield family


def register() -> None:
    """The SMS backlog, on web's /metrics."""
    platform_collector(BacklogCollector())
