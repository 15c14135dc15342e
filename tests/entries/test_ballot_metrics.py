"""Ballots in /metrics: accepted, replayed and refused by code, counted once per submission through the API."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from entries.services import ballot_submit
from tests.metrics import Samples, parse, value

pytestmark = pytest.mark.django_db


def scrape(client) -> Samples:
    return parse(client.get("/metrics").content.decode())


def count(samples: Samples, name: str, **labels: str) -> float:
    return value(samples, name, **labels) or 0.0


def test_ballots_are_counted_accepted_replayed_and_refused_by_code(
    client, make_player, make_lottery, client_for, django_capture_on_commit_callbacks
):
    lottery = make_lottery()
    ended = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))
    player = client_for(make_player())
    before = scrape(client)

    with django_capture_on_commit_callbacks(execute=True):
        url = reverse("ballot-submit", args=[lottery.pk])
        assert player.post(url, headers={"Idempotency-Key": "metrics-1"}).status_code == 201
        assert player.post(url, headers={"Idempotency-Key": "metrics-1"}).status_code == 201  # a retry
        assert player.post(url).status_code == 409  # over the limit
        assert player.post(reverse("ballot-submit", args=[ended.pk])).status_code == 409
        assert player.post(reverse("ballot-submit", args=[987654321])).status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return count(after, name, **labels) - count(before, name, **labels)

    assert delta("lottery_ballots_accepted_total") == 1
    assert delta("lottery_ballots_replayed_total") == 1
    assert delta("lottery_ballots_refused_total", code="ballot_limit_reached") == 1
    assert delta("lottery_ballots_refused_total", code="lottery_closed") == 1
    assert delta("lottery_ballots_refused_total", code="lottery_not_found") == 1
    labelled = {
        name for (name, labels), _ in after.items() if any(k in {"lottery", "player", "path"} for k, _ in labels)
    }
    assert labelled == set()  # no id of a lottery, player or path in any label


def test_a_ballot_whose_transaction_rolls_back_is_not_counted_as_accepted(
    client, make_player, make_lottery, django_capture_on_commit_callbacks
):
    lottery = make_lottery()
    before = count(scrape(client), "lottery_ballots_accepted_total")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        ballot_submit(lottery_id=lottery.pk, player=make_player())
        raise RuntimeError("the caller's transaction fails after the ballot")

    assert count(scrape(client), "lottery_ballots_accepted_total") == before
    assert lottery.ballots.count() == 0
