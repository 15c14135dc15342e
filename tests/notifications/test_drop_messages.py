"""What a drop's entrants are told: winners at the draw, nobody twice; alternates wait, and one promoted hears it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from draws.models import LotteryAward
from draws.services import awards_forfeit_due
from entries.models import Ballot
from lifecycle.services import drop_create
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def told(draw, kind):
    return sorted(
        Notification.objects.filter(lottery_id=draw.lottery_id, kind=kind).values_list("player_id", flat=True)
    )


def players_of(ballot_ids):
    return sorted(Ballot.objects.filter(pk__in=ballot_ids).values_list("player_id", flat=True))


def test_the_draw_tells_winners_they_won_the_rest_they_were_not_selected_and_alternates_nothing_yet(drawn_drop):
    winners, alternates = players_of(drawn_drop.winning_ballot_ids), players_of(drawn_drop.alternate_ballot_ids)
    everyone = sorted(Ballot.objects.filter(lottery_id=drawn_drop.lottery_id).values_list("player_id", flat=True))

    assert told(drawn_drop, "winner") == winners
    assert told(drawn_drop, "not_selected") == sorted(set(everyone) - set(winners) - set(alternates))


def test_an_alternate_promoted_in_an_unclaimed_awards_place_gets_one_winner_sms(drawn_drop):
    first, second = LotteryAward.objects.filter(draw=drawn_drop).order_by("rank")
    first.status = LotteryAward.Status.CLAIMED
    first.save(update_fields=["status"])

    assert second.claim_deadline is not None
    awards_forfeit_due(now=second.claim_deadline + timedelta(seconds=1))
    awards_forfeit_due(now=second.claim_deadline + timedelta(seconds=2))  # a second sweep changes nothing

    promoted = LotteryAward.objects.get(promoted_from=second)
    [sms] = Notification.objects.filter(award=promoted)
    assert (sms.kind, sms.player_id) == ("winner", promoted.player_id)
    assert told(drawn_drop, "winner") == sorted([first.player_id, second.player_id, promoted.player_id])


def test_a_drop_that_opens_announces_itself_to_the_players_who_opted_in(make_player, enter):
    from entries.models import ConsentSource
    from entries.services import sms_consent_set
    from lifecycle.services import scheduled_lottery_open

    opted = [make_player() for _ in range(3)]
    for player in opted:
        sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.API, actor=None)
    make_player()  # never opted in
    now = timezone.now()
    drop = drop_create(
        title="Later", prize="Bike", prize_quantity=1,
        opens_at=now + timedelta(minutes=5), closes_at=now + timedelta(hours=1), source="system",
    )  # fmt: skip
    assert not Notification.objects.filter(lottery=drop).exists()  # scheduled: nothing yet

    scheduled_lottery_open(lottery_id=drop.pk, source="timer", now=drop.opens_at)
    scheduled_lottery_open(lottery_id=drop.pk, source="beat", now=drop.opens_at)  # the sweep after the timer

    told = Notification.objects.filter(lottery=drop, kind="broadcast").values_list("player_id", flat=True)
    assert sorted(told) == sorted(p.pk for p in opted)
