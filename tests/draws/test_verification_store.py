"""The public verification endpoint serves a recomputation made once and stored; the auditor's command recomputes."""

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from draws import services
from draws.models import Draw, DrawVerificationRecord
from entries.models import Ballot, Player
from lifecycle.services import lottery_close
from tests.concurrency import run_together


def _drawn(make_lottery, make_player, enter, *, ballots: int = 12) -> Draw:
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at, winners_count=2)
    for _ in range(ballots):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    draw = lottery_close(lottery_id=lottery.pk, source="command").draw
    assert draw is not None
    return draw


def _document(client: APIClient, draw: Draw) -> Any:
    response = client.get(reverse("draw-verification", args=[draw.pk]))
    assert response.status_code == 200, response
    return json.loads(b"".join(getattr(response, "streaming_content", [])))


@pytest.fixture
def recomputations(monkeypatch):
    """Counts the recomputations the endpoint's service runs."""
    calls: list[int] = []
    real = services.draw_verify

    def counted(*, draw: Draw) -> services.DrawVerification:
        calls.append(draw.pk)
        time.sleep(0.2)  # a big draw takes a while: the crowd arrives meanwhile
        return real(draw=draw)

    monkeypatch.setattr(services, "draw_verify", counted)
    return calls


@pytest.mark.django_db
def test_the_first_request_stores_the_recomputation_and_the_second_reads_it(
    api, make_lottery, make_player, enter, recomputations
):
    # given a drawn lottery nobody has verified yet
    draw = _drawn(make_lottery, make_player, enter)
    assert not DrawVerificationRecord.objects.filter(draw=draw).exists()

    # when its verification is fetched twice
    first = _document(api, draw)
    stored = DrawVerificationRecord.objects.get(draw=draw)
    second = _document(api, draw)

    # then it was computed once, stored, and both answers are the stored record
    assert recomputations == [draw.pk]
    assert DrawVerificationRecord.objects.filter(draw=draw).count() == 1
    assert DrawVerificationRecord.objects.get(draw=draw).computed_at == stored.computed_at
    assert parse_datetime(first["verification"]["computed_at"]) == stored.computed_at
    assert first["verification"] == second["verification"]
    assert first["verification"]["matches"] is True
    assert first["ballot_ids"] == second["ballot_ids"]
    assert len(second["ballot_ids"]) == 12

    # and the stored record is what a fresh recomputation finds
    fresh = services.draw_verify(draw=draw)
    assert (
        stored.matches,
        stored.commitment_matches,
        stored.entries_digest_matches,
        stored.winners_match,
        stored.recomputed_entries_count,
        stored.recomputed_entries_digest,
        list(stored.recomputed_winning_ballot_ids),
    ) == (
        fresh.matches,
        fresh.commitment_matches,
        fresh.entries_digest_matches,
        fresh.winners_match,
        fresh.recomputed_entries_count,
        fresh.recomputed_entries_digest,
        fresh.recomputed_winning_ballot_ids,
    )
    assert stored.recomputed_entries_digest == draw.entries_digest
    assert list(stored.recomputed_winning_ballot_ids) == list(draw.winning_ballot_ids)


@pytest.mark.django_db
def test_admin_shows_whether_and_when_the_verification_was_stored(api, client, make_lottery, make_player, enter):
    staff = Player.objects.create_superuser(username="audit-staff", email="a@example.com", password="pw-for-tests")
    client.force_login(staff)
    draw = _drawn(make_lottery, make_player, enter, ballots=3)
    page = reverse("admin:draws_draw_change", args=[draw.pk])

    before = client.get(page).content.decode()
    _document(api, draw)
    after = client.get(page).content.decode()

    assert "not computed yet" in before
    computed_at = DrawVerificationRecord.objects.get(draw=draw).computed_at
    assert f"matches, computed {computed_at:%Y-%m-%d %H:%M:%S}" in after


@pytest.mark.django_db
def test_verify_draw_recomputes_from_the_ballots_whatever_was_stored(api, make_lottery, make_player, enter):
    # given a draw whose verification was stored, then a ballot slipped into its lottery
    draw = _drawn(make_lottery, make_player, enter)
    stored = _document(api, draw)["verification"]
    slipped = Ballot.objects.create(lottery_id=draw.lottery_id, player=make_player(), status="valid", slot=1)

    # when the endpoint is asked again, and the auditor runs the command
    document = _document(api, draw)
    with pytest.raises(CommandError, match="does NOT verify"):
        call_command("verify_draw", str(draw.pk))

    # then the endpoint serves its record unchanged (and the streamed list, read afresh, shows the
    # new ballot, so an independent recomputation catches it), while the command recomputed and refused
    assert document["verification"] == stored
    assert slipped.pk in document["ballot_ids"]
    assert document["entries_count"] == 12 != len(document["ballot_ids"])
    assert services.draw_verify(draw=draw).entries_digest_matches is False


@pytest.mark.django_db
def test_a_stored_verification_cannot_be_changed_or_deleted(api, make_lottery, make_player, enter):
    draw = _drawn(make_lottery, make_player, enter, ballots=3)
    _document(api, draw)

    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        DrawVerificationRecord.objects.filter(draw=draw).update(winners_match=False)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        DrawVerificationRecord.objects.filter(draw=draw).delete()

    assert DrawVerificationRecord.objects.get(draw=draw).winners_match is True


@pytest.mark.django_db(transaction=True)
def test_a_crowd_on_a_new_draw_computes_its_verification_once(make_lottery, make_player, enter, recomputations):
    # given a new draw, and eight requests for its verification at the same moment
    draw = _drawn(make_lottery, make_player, enter)

    results = run_together(*[lambda: services.draw_verification_stored(draw=draw)] * 8)

    # then one of them computed it and every one got the same stored record
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert recomputations == [draw.pk]
    assert {(r.pk, r.computed_at) for r in results} == {(draw.pk, DrawVerificationRecord.objects.get().computed_at)}


@pytest.mark.django_db
def test_the_verification_endpoint_has_its_own_rate_per_client_address(
    monkeypatch, api, client_for, make_lottery, make_player, enter
):
    # given a verification rate of two a minute, while the other rates stay high
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "verification": "2/min"}
    )
    draw = _drawn(make_lottery, make_player, enter, ballots=2)
    url = reverse("draw-verification", args=[draw.pk])

    # when one address asks three times, once with a player's token
    statuses = [api.get(url).status_code, api.get(url).status_code]
    refused = client_for(make_player()).get(url)

    # then the third is refused in the one error shape, and another address is still served
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("application/json")
    error = refused.json()["error"]
    assert error["code"] == "throttled"
    assert error["message"]
    assert 0 < error["details"]["retry_after_seconds"] <= 60
    assert int(refused["Retry-After"]) > 0
    assert api.get(url, REMOTE_ADDR="203.0.113.9").status_code == 200
    # the draw record itself is not throttled by this scope
    assert api.get(reverse("draw-detail", args=[draw.pk])).status_code == 200
