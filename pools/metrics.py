"""Prometheus metrics of the stake consumer: stakes by outcome, batch time, and its lag per partition.

Counted in the consumer process (a dead letter replayed from admin counts
in web's); served on ``STAKES_CONSUMER_METRICS_PORT`` (core.prometheus).
"""

from prometheus_client import Counter, Histogram

from outbox.inbox import Tally
from outbox.metrics import ConsumerLag

CONSUMER = "stakes"

stakes_total = Counter(
    "lottery_stakes_total",
    "Stake messages taken from Kafka and committed, by outcome (applied, duplicate, dead_lettered)",
    ["outcome"],
)
batch_duration = Histogram(
    "lottery_consumer_batch_duration_seconds",
    "One consumer batch, from the poll's records to the database commit",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
lag = ConsumerLag(CONSUMER)


def stakes_counted(tallies: dict[int, Tally]) -> None:
    """A committed batch's tallies (call on commit)."""
    for outcome in ("applied", "duplicate", "dead_lettered"):
        count = sum(getattr(tally, outcome) for tally in tallies.values())
        if count:
            stakes_total.labels(outcome).inc(count)
