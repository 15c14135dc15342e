"""Draws and awards in /metrics, counted when their transaction commits: by kind, with the draw's time."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from draws.models import LotteryAward
from draws.services import award_claim, award_forfeit
from lifecycle.services import lottery_close
from tests.metrics import Samples, parse, value

pytestmark = pytest.mark.django_db


def scrape(client) -> Samples:
    return parse(client.get("/metrics").content.decode())


def counter(samples: Samples, name: str, **labels: str) -> float:
    return value(samples, name, **labels) or 0.0


def test_a_draw_counts_itself_its_time_and_its_awards_by_kind(
    client, make_lottery, make_player, enter, django_capture_on_commit_callbacks
):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at, winners_count=2)
    for _ in range(3):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    before = scrape(client)

    with django_capture_on_commit_callbacks(execute=True):
        lottery_close(lottery_id=lottery.pk, source="command")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("lottery_draws_total", kind="drop") == 1
    assert delta("lottery_draw_duration_seconds_count", kind="drop") == 1
    assert delta("lottery_awards_created_total", kind="drop") == 2
    assert delta("lottery_draws_total", kind="daily") == 0


def test_a_draw_rolled_back_with_its_transaction_is_not_counted(
    client, make_lottery, make_player, enter, django_capture_on_commit_callbacks
):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    before = counter(scrape(client), "lottery_draws_total", kind="drop")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        lottery_close(lottery_id=lottery.pk, source="command")
        raise RuntimeError("the transaction fails after the draw")

    assert counter(scrape(client), "lottery_draws_total", kind="drop") == before


def test_claims_forfeits_and_promoted_alternates_are_counted(client, drawn_drop, django_capture_on_commit_callbacks):
    first, second = LotteryAward.objects.filter(draw=drawn_drop).order_by("rank")
    before = scrape(client)

    with django_capture_on_commit_callbacks(execute=True):
        award_claim(award_id=first.pk, player=first.player)
        award_claim(award_id=first.pk, player=first.player)  # idempotent: counted once
        award_forfeit(award_id=second.pk, reason="unclaimed")  # the first alternate is promoted
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("lottery_awards_claimed_total") == 1
    assert delta("lottery_awards_forfeited_total", reason="unclaimed") == 1
    assert delta("lottery_awards_created_total", kind="drop") == 1
