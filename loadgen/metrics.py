"""Prometheus metrics of the load generator's ground truth: counted where each anomaly is recorded."""

from prometheus_client import Counter

anomalies_injected = Counter(
    "lottery_anomalies_injected_total",
    "Anomalies injected and recorded in the ground truth, by kind (the first seed's event names, fraudulent_entry)",
    ["kind"],
)
stats_506_answered = Counter(
    "lottery_stats_506_answered_total", "Stats requests answered 506 stats_unavailable during an injected burst"
)

# Every metric this app exports, for the list in docs/loadgen.md.
METRICS = ("lottery_anomalies_injected_total", "lottery_stats_506_answered_total")
