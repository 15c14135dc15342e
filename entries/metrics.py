"""Prometheus metrics of ballots: accepted, refused by the rule they broke, and Idempotency-Key replays.

Counted once per submission, by ``entries.services.ballot_submit``, in the
process that took it (web, or a load generator); no lottery or player ids.
"""

from django.db import transaction
from prometheus_client import Counter

accepted_total = Counter("lottery_ballots_accepted_total", "Ballots stored as valid (counted on commit)")
refused_total = Counter(
    "lottery_ballots_refused_total",
    "Ballot submissions refused, by error code (duplicate_entry: a fraud rejection, stored as rejected)",
    ["code"],
)
replayed_total = Counter(
    "lottery_ballots_replayed_total", "Submissions answered with an earlier ballot of the same Idempotency-Key"
)


def ballot_counted(*, replayed: bool) -> None:
    if replayed:
        replayed_total.inc()
    else:
        transaction.on_commit(accepted_total.inc)


def ballot_refused(code: str) -> None:
    refused_total.labels(code).inc()
