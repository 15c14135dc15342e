"""The ban service: the one way ban state changes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from entries.errors import BanReasonRequired, PlayerNotFound
from entries.models import Ballot, Player, PlayerBanEvent
from entries.services import ballot_submit, player_ban, player_unban
from lifecycle.services import lottery_close

pytestmark = pytest.mark.django_db


def test_ban_records_who_when_and_why_and_voids_only_undrawn_ballots(make_player, make_lottery, enter):
    staff = make_player(roles=["support"])
    player = make_player()
    drawn = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))
    old = enter(drawn, player, now=drawn.closes_at - timedelta(minutes=5))
    lottery_close(lottery_id=drawn.pk, source="command")
    open_lottery = make_lottery()
    current = enter(open_lottery, player)

    event = player_ban(player_id=player.pk, reason="  chargebacks  ", actor=staff)

    player.refresh_from_db()
    assert player.is_banned and player.ban_reason == "chargebacks" and player.banned_by == staff
    assert timezone.now() - player.banned_at < timedelta(minutes=1)
    assert event is not None
    assert (event.action, event.reason, event.actor, event.voided_ballots) == ("ban", "chargebacks", staff, 1)
    assert Ballot.objects.get(pk=current.pk).status == "void"
    assert Ballot.objects.get(pk=old.pk).status == "valid"  # a drawn result is history


def test_a_ban_needs_a_reason_and_changes_nothing_without_one(make_player):
    player = make_player()

    with pytest.raises(BanReasonRequired):
        player_ban(player_id=player.pk, reason="   ", actor=None)

    assert not Player.objects.get(pk=player.pk).is_banned
    assert not PlayerBanEvent.objects.exists()


def test_banning_twice_is_a_no_op(make_player):
    player = make_player()
    player_ban(player_id=player.pk, reason="first", actor=None)

    assert player_ban(player_id=player.pk, reason="second", actor=None) is None
    assert Player.objects.get(pk=player.pk).ban_reason == "first"
    assert PlayerBanEvent.objects.count() == 1


def test_banning_an_unknown_player_is_a_clear_error():
    with pytest.raises(PlayerNotFound):
        player_ban(player_id=99999, reason="x", actor=None)


def test_unban_lets_the_player_enter_again_but_voided_ballots_stay_void(make_player, make_lottery, enter):
    player = make_player()
    lottery = make_lottery()
    voided = enter(lottery, player)
    player_ban(player_id=player.pk, reason="mistake?", actor=None)

    event = player_unban(player_id=player.pk, reason="appeal upheld", actor=None)
    fresh = ballot_submit(lottery_id=lottery.pk, player=player).ballot

    player.refresh_from_db()
    assert event is not None and event.action == "unban"
    assert (player.is_banned, player.banned_at, player.ban_reason, player.banned_by) == (False, None, "", None)
    assert Ballot.objects.get(pk=voided.pk).status == "void"
    assert fresh.status == "valid"
    assert list(player.ban_events.values_list("action", flat=True)) == ["unban", "ban"]
