"""Races that the database must settle: every test here runs real concurrent transactions."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from draws.models import Draw
from draws.services import draw_verify
from entries.errors import BallotLimitReached, DuplicateEntry, PlayerBanned
from entries.models import Ballot, Player
from entries.services import ballot_submit, player_ban, players_for_stakes
from lifecycle.services import lottery_close
from lotteries.errors import LotteryClosed
from tests.concurrency import run_together

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_ballot_racing_the_close_lands_before_it_or_gets_lottery_closed(make_lottery, make_player):
    lottery = make_lottery(winners_count=3)
    players = [make_player() for _ in range(24)]

    def submit(player):
        return lambda: ballot_submit(lottery_id=lottery.pk, player=player).ballot.pk

    close = lambda: lottery_close(lottery_id=lottery.pk, source="api", force=True)  # noqa: E731
    # One ballot before the race, so that the close has a draw to make even when it wins every race
    # (a close before any valid ballot cancels the lottery instead, which is another test's case).
    first = submit(players[0])()
    results = run_together(*map(submit, players[1:12]), close, *map(submit, players[12:]))

    outcome = results[11]
    accepted = {first} | {r for r in results if isinstance(r, int)}
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, LotteryClosed) for r in refused), refused
    assert len(accepted) + len(refused) == 24
    draw = Draw.objects.get(lottery=lottery)
    assert outcome.draw == draw
    # Every accepted ballot is in the sealed list, and nothing else is.
    assert draw.entries_count == len(accepted)
    assert set(Ballot.objects.filter(lottery=lottery).values_list("id", flat=True)) == accepted
    assert draw_verify(draw=draw).matches


def test_concurrent_retries_with_one_idempotency_key_make_one_ballot(make_lottery, make_player):
    lottery = make_lottery()
    player = make_player()

    results = run_together(
        *[lambda: ballot_submit(lottery_id=lottery.pk, player=player, idempotency_key="tap-tap-tap")] * 6
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({r.ballot.pk for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert Ballot.objects.filter(player=player).count() == 1


def test_a_burst_from_one_player_stores_exactly_the_limit(make_lottery, make_player, settings):
    settings.MAX_BALLOTS_PER_PLAYER = 2
    lottery = make_lottery()
    player = make_player()

    results = run_together(*[lambda: ballot_submit(lottery_id=lottery.pk, player=player)] * 6)

    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(accepted) == 2
    assert all(isinstance(r, BallotLimitReached) for r in refused), refused
    assert set(Ballot.objects.filter(player=player, status="valid").values_list("slot", flat=True)) == {1, 2}


def test_two_players_sharing_a_phone_at_the_same_moment_leave_one_valid_ballot(make_lottery, make_player):
    # Simultaneous conflicting inserts can deadlock on the exclusion
    # constraint; 20 rounds make that path all but certain to be taken.
    for _ in range(20):
        lottery = make_lottery()
        first = make_player()
        second = make_player(phone_number=first.phone_number)

        results = run_together(
            lambda: ballot_submit(lottery_id=lottery.pk, player=first),  # noqa: B023
            lambda: ballot_submit(lottery_id=lottery.pk, player=second),  # noqa: B023
        )

        assert sum(isinstance(r, DuplicateEntry) for r in results) == 1, results
        assert sum(not isinstance(r, BaseException) for r in results) == 1, results
        assert lottery.ballots.filter(status="valid").count() == 1
        assert lottery.ballots.filter(status="rejected", rejection_reason="shared_phone_number").count() == 1


def test_a_ban_racing_a_ballot_never_leaves_a_valid_ballot_of_a_banned_player(make_lottery, make_player):
    for _ in range(5):
        lottery = make_lottery()
        player = make_player()

        results = run_together(
            lambda: ballot_submit(lottery_id=lottery.pk, player=player),  # noqa: B023
            lambda: player_ban(player_id=player.pk, reason="fraud ring", actor=None),  # noqa: B023
        )

        assert not isinstance(results[0], BaseException) or isinstance(results[0], PlayerBanned), results
        assert not Ballot.objects.filter(player=player, status="valid").exists()


def test_a_ban_during_an_open_lottery_voids_the_ballot_and_the_draw_never_picks_it(make_lottery, make_player):
    closes_at = timezone.now() + timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at, winners_count=3)
    banned = make_player()
    others = [make_player() for _ in range(2)]
    banned_ballot = ballot_submit(lottery_id=lottery.pk, player=banned).ballot
    for player in others:
        ballot_submit(lottery_id=lottery.pk, player=player)

    event = player_ban(player_id=banned.pk, reason="chargebacks", actor=None)
    # Three winners over what is left: if the void did not hold, all three ballots would win.
    draw = lottery_close(lottery_id=lottery.pk, source="command", force=True).draw

    assert event is not None and event.voided_ballots == 1
    assert Ballot.objects.get(pk=banned_ballot.pk).status == "void"
    assert draw is not None
    assert draw.entries_count == 2
    assert banned_ballot.pk not in draw.winning_ballot_ids


def test_a_ban_racing_the_draw_either_voids_before_it_or_leaves_the_drawn_result_untouched(make_lottery, make_player):
    for _ in range(5):
        lottery = make_lottery(winners_count=2)
        banned = make_player()
        ballot = ballot_submit(lottery_id=lottery.pk, player=banned).ballot
        for _ in range(3):
            ballot_submit(lottery_id=lottery.pk, player=make_player())

        results = run_together(
            lambda: player_ban(player_id=banned.pk, reason="fraud", actor=None),  # noqa: B023
            lambda: lottery_close(lottery_id=lottery.pk, source="beat", force=True),  # noqa: B023
        )

        assert not [r for r in results if isinstance(r, BaseException)], results
        draw = results[1].draw
        ballot.refresh_from_db()
        if ballot.status == "void":  # the ban came first: the draw did not see the ballot
            assert draw.entries_count == 3
            assert ballot.pk not in draw.winning_ballot_ids
        else:  # the draw came first: a ban does not rewrite a drawn lottery
            assert draw.entries_count == 4
            assert results[0].voided_ballots == 0
        # Either way the sealed list is exactly today's valid ballots.
        assert draw_verify(draw=draw).matches


def test_two_stake_batches_naming_the_same_new_player_both_get_the_one_player_created():
    # The first batch creates the player and holds its transaction open; the second one's INSERT
    # waits for that commit, skips the row, and must still find the player: its lock statement
    # sees what committed since the INSERT's snapshot.
    pause = 0.5
    created = threading.Event()

    def first() -> int:
        try:
            with transaction.atomic():
                pk = players_for_stakes(external_ids={"race-7", "alone-1"})["race-7"].pk
                created.set()
                time.sleep(pause)  # the second batch starts now and waits on the row
                return pk
        finally:
            created.set()

    def second() -> tuple[int, float]:
        created.wait(10)
        started = time.monotonic()
        with transaction.atomic():  # a player missing from the answer is a KeyError
            pk = players_for_stakes(external_ids={"race-7", "alone-2"})["race-7"].pk
        return pk, time.monotonic() - started

    Player.objects.filter(external_account_id="race-7").delete()
    results = run_together(first, second)

    assert not any(isinstance(result, BaseException) for result in results), results
    (first_pk, (second_pk, waited)) = results
    [player] = Player.objects.filter(external_account_id="race-7")
    assert (first_pk, second_pk) == (player.pk, player.pk), results
    assert waited >= pause * 0.8, waited  # it did wait for the first batch's commit
