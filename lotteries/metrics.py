"""Prometheus gauge of lotteries waiting for their draw, read from PostgreSQL at each scrape of web's /metrics.

A lottery is due for its draw once its window has ended (an open one past
``closes_at``; pools close when full instead) or once it is closed (a full
pool, a forced close). Beat draws a due lottery within seconds; the gauge
says how long the oldest one has waited, so an alert can tell a draw that
never came (``lotteries.selectors.lotteries_due_ids`` is the same rule).
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.prometheus import platform_collector
from lotteries.selectors import lotteries_due_since

logger = logging.getLogger(__name__)


class DueCollector(Collector):
    _DUE = ("lottery_lotteries_due", "Lotteries due for their draw and not drawn yet, by kind")
    _WAIT = (
        "lottery_draw_overdue_seconds",
        "Seconds the oldest lottery due for its draw has waited since it became due, by kind (0 when none)",
    )

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*self._DUE, labels=["kind"])
        yield GaugeMetricFamily(*self._WAIT, labels=["kind"])

    def collect(self) -> Iterator[Metric]:
        from lotteries.models import Lottery

        now = timezone.now()
        try:
            due = lotteries_due_since(now=now)
        except DatabaseError as error:
            logger.warning("draw metrics unavailable", exc_info=error)
            return
        counts = GaugeMetricFamily(*self._DUE, labels=["kind"])
        waits = GaugeMetricFamily(*self._WAIT, labels=["kind"])
        for kind in Lottery.Kind.values:
            since = [moment for moment_kind, moment in due if moment_kind == kind]
            counts.add_metric([kind], float(len(since)))
            waits.add_metric([kind], max(0.0, (now - min(since)).total_seconds()) if since else 0.0)
        yield counts
        yield waits


def register() -> None:
    """The lotteries waiting for their draw, on web's /metrics."""
    platform_collector(DueCollector())
