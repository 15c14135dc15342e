"""web's /metrics says how long the oldest lottery due for its draw has waited (the alert's figure)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from lifecycle.services import lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.services import lottery_transition
from tests.metrics import parse, value

pytestmark = pytest.mark.django_db


def must(sample: float | None) -> float:
    assert sample is not None, "no such sample"
    return sample


def gauges(client) -> dict[str, tuple[float, float]]:
    """Each kind's (due, oldest wait); a kind missing from the scrape fails here."""
    samples = parse(client.get("/metrics").content.decode())
    return {
        kind: (
            must(value(samples, "lottery_lotteries_due", kind=kind)),
            must(value(samples, "lottery_draw_overdue_seconds", kind=kind)),
        )
        for kind in ("daily", "drop", "pool")
    }


def test_with_nothing_due_every_kind_reads_zero(client, make_lottery):
    make_lottery(closes_at=timezone.now() + timedelta(hours=1))  # open, its window not ended

    assert gauges(client) == {"daily": (0, 0), "drop": (0, 0), "pool": (0, 0)}


def test_an_open_drop_past_its_close_is_due_since_its_close_and_the_oldest_sets_the_wait(client, make_lottery):
    now = timezone.now()
    make_lottery(closes_at=now - timedelta(minutes=10), opens_at=now - timedelta(hours=1))
    make_lottery(closes_at=now - timedelta(minutes=2), opens_at=now - timedelta(hours=1))

    due, waited = gauges(client)["drop"]

    assert due == 2
    assert 600 <= waited < 600 + 60


def test_a_lottery_closed_before_its_window_ended_is_due_since_its_close_and_a_drawn_one_is_not(
    client, make_lottery, make_player, enter
):
    now = timezone.now()
    drawn = make_lottery(kind="daily", closes_at=now - timedelta(hours=1), opens_at=now - timedelta(hours=3))
    enter(drawn, make_player(), now=now - timedelta(hours=2))
    assert lottery_close(lottery_id=drawn.pk, source=TransitionSource.COMMAND).lottery.state == "drawn"
    closed = make_lottery(closes_at=now + timedelta(hours=1))
    with transaction.atomic():  # closed, its draw not run yet (a full pool waiting for its draw task, say)
        locked = Lottery.objects.select_for_update().get(pk=closed.pk)
        lottery_transition(
            locked, Lottery.State.CLOSED, source=TransitionSource.ADMIN, actor=None, now=now, forced=True
        )

    assert gauges(client)["daily"] == (0, 0)
    due, waited = gauges(client)["drop"]

    assert due == 1
    assert 0 <= waited < 60
