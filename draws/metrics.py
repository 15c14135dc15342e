"""Prometheus metrics of draws and awards, counted by ``draws.services`` when their transaction commits.

In the process that drew (a Celery worker for beat's closes, timers and
pools; web for the close API and admin; a command). Labels: the lottery's
kind (daily, drop, pool) and a forfeit's reason, never a lottery id.
"""

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import transaction
from prometheus_client import Counter, Histogram

Run = TypeVar("Run", bound=Callable[..., Any])

draws_total = Counter("lottery_draws_total", "Lotteries drawn, by kind", ["kind"])
draw_duration = Histogram(
    "lottery_draw_duration_seconds",
    "One draw: seal the entries, pick the winners and alternates, write the awards and their events",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
awards_created_total = Counter(
    "lottery_awards_created_total", "Awards made, by kind: a draw's winners and promoted alternates", ["kind"]
)
awards_claimed_total = Counter("lottery_awards_claimed_total", "Drop awards claimed by their winner")
awards_forfeited_total = Counter(
    "lottery_awards_forfeited_total", "Drop awards forfeited, by reason (unclaimed, banned)", ["reason"]
)


def drawn(*, kind: str, seconds: float, awards: int) -> None:
    def count() -> None:
        draws_total.labels(kind).inc()
        draw_duration.labels(kind).observe(seconds)
        awards_created_total.labels(kind).inc(awards)

    transaction.on_commit(count)


def timed_draw(run: Run) -> Run:
    """``draws.services.draw_run``, timed and counted with its awards when it draws (on commit)."""

    @functools.wraps(run)
    def timed(*args: Any, lottery: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        draw = run(*args, lottery=lottery, **kwargs)
        if draw is not None:
            drawn(kind=lottery.kind, seconds=time.monotonic() - began, awards=len(draw.winning_ballot_ids))
        return draw

    return timed  # type: ignore[return-value]


def claimed() -> None:
    transaction.on_commit(awards_claimed_total.inc)


def forfeited(*, reason: str, kind: str, promoted: bool) -> None:
    def count() -> None:
        awards_forfeited_total.labels(reason).inc()
        if promoted:
            awards_created_total.labels(kind).inc()

    transaction.on_commit(count)
