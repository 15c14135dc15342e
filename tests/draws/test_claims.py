"""A drop's awards are claimed by their winners in time, or forfeited with their reason, and the draw's next
alternate is promoted to the forfeited rank, with its own award and event."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from draws.models import LotteryAward
from draws.services import award_forfeit, awards_forfeit_due, draw_verify
from entries.models import Ballot
from entries.services import player_ban
from outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db


def standing(draw):
    return list(LotteryAward.objects.filter(draw=draw).exclude(status="forfeited").order_by("rank"))


def event_data(draw, event_type):
    rows = OutboxEvent.objects.filter(key=str(draw.lottery_id), event_type=event_type).order_by("id")
    return [json.loads(row.value)["data"] for row in rows]


def test_a_drops_winners_have_a_claim_window_and_claim_their_own_award_once(drawn_drop, client_for):
    first, second = standing(drawn_drop)
    assert first.claim_deadline == drawn_drop.drawn_at + timedelta(seconds=600)

    claimed = client_for(first.player).post(reverse("award-claim", args=[first.pk]))
    again = client_for(first.player).post(reverse("award-claim", args=[first.pk]))
    not_theirs = client_for(first.player).post(reverse("award-claim", args=[second.pk]))

    assert claimed.status_code == again.status_code == 200, claimed.json()
    assert (claimed.json()["status"], claimed.json()["award_id"]) == ("claimed", first.pk)
    assert not_theirs.status_code == 404
    assert not_theirs.json()["error"]["code"] == "award_not_found"
    # Past every deadline, the claimed award stands; the other is forfeited.
    assert awards_forfeit_due(now=second.claim_deadline) == [second.pk]
    assert LotteryAward.objects.get(pk=first.pk).status == "claimed"


def test_an_unclaimed_award_promotes_the_first_alternate_with_a_new_award_and_events(drawn_drop, client_for, api):
    first, second = standing(drawn_drop)
    client_for(first.player).post(reverse("award-claim", args=[first.pk]))  # the second winner never claims

    forfeited_ids = awards_forfeit_due(now=second.claim_deadline + timedelta(seconds=1))

    assert forfeited_ids == [second.pk]
    second.refresh_from_db()
    assert (second.status, second.forfeit_reason) == ("forfeited", "unclaimed")
    promoted = second.promoted_to
    assert (promoted.rank, promoted.alternate_rank, promoted.ballot_id) == (2, 1, drawn_drop.alternate_ballot_ids[0])
    assert promoted.claim_deadline is not None and promoted.status == "played_out"
    [created] = [e for e in event_data(drawn_drop, "AwardCreated") if e["award_id"] == promoted.pk]
    assert (created["promotes_award_id"], created["alternate_rank"], created["rank"]) == (second.pk, 1, 2)
    [forfeit] = event_data(drawn_drop, "AwardForfeited")
    assert (forfeit["award_id"], forfeit["reason"], forfeit["promoted_award_id"]) == (
        second.pk,
        "unclaimed",
        promoted.pk,
    )
    detail = api.get(reverse("lottery-detail", args=[drawn_drop.lottery_id])).json()
    assert [(w["rank"], w["status"], w["forfeit_reason"], w["promotes_award_id"]) for w in detail["winners"]] == [
        (1, "claimed", "", None),
        (2, "forfeited", "unclaimed", None),
        (2, "played_out", "", second.pk),
    ]
    assert draw_verify(draw=drawn_drop).matches  # every rank, alternates included, still recomputes


def test_a_claim_after_the_deadline_is_refused(drawn_drop, client_for):
    first, _ = standing(drawn_drop)
    LotteryAward.objects.filter(pk=first.pk).update(claim_deadline=timezone.now() - timedelta(seconds=1))

    response = client_for(first.player).post(reverse("award-claim", args=[first.pk]))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "award_not_claimable"


def test_a_winner_banned_before_claiming_forfeits_and_a_banned_alternate_is_passed_over(
    drawn_drop, django_capture_on_commit_callbacks, client_for
):
    first, _ = standing(drawn_drop)
    alternate_players = [Ballot.objects.get(pk=b).player for b in drawn_drop.alternate_ballot_ids]
    player_ban(player_id=alternate_players[0].pk, reason="fraud", actor=None)

    with django_capture_on_commit_callbacks(execute=True):
        player_ban(player_id=first.player_id, reason="fraud", actor=None)

    first.refresh_from_db()
    assert (first.status, first.forfeit_reason) == ("forfeited", "banned")
    promoted = first.promoted_to
    assert (promoted.rank, promoted.alternate_rank, promoted.player_id) == (1, 2, alternate_players[1].pk)
    refused = client_for(first.player).post(reverse("award-claim", args=[first.pk]))
    assert refused.status_code == 403


def test_with_no_alternate_left_the_unit_stays_unawarded(drawn_drop):
    first, second = standing(drawn_drop)
    now = second.claim_deadline

    promoted = [award_forfeit(award_id=award.pk, reason="unclaimed", now=now) for award in (first, second)]
    assert [p.alternate_rank if p is not None else None for p in promoted] == [1, 2]
    last = promoted[0]
    assert last is not None
    more = award_forfeit(award_id=last.pk, reason="unclaimed", now=last.claim_deadline)

    assert more is None
    assert LotteryAward.objects.get(pk=last.pk).status == "forfeited"
    assert [e["promoted_award_id"] for e in event_data(drawn_drop, "AwardForfeited")][-1] is None
