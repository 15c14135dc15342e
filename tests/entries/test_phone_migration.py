"""The data migration that rewrote the stored phone numbers as E.164, run on rows stored as the old code stored them.

The migration's function runs with the historical models of its place in the
migration graph, on real rows in PostgreSQL, with the fraud constraint live.
"""

from datetime import timedelta
from importlib import import_module

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from entries.models import Ballot, Player
from lifecycle.services import lottery_close
from lotteries.models import Lottery, TransitionSource

migration = import_module("entries.migrations.0008_normalise_phone_numbers")

pytestmark = pytest.mark.django_db


def _historical_apps():
    loader = MigrationExecutor(connection).loader
    return loader.project_state(
        [("entries", "0007_player_sms_consent"), ("lotteries", "0004_poolgame_moves_to_pools")]
    ).apps


def _legacy_ballot(lottery: Lottery, player: Player, phone: str) -> Ballot:
    """A valid ballot as the old code stored it: the player's number copied as typed."""
    return Ballot.objects.create(lottery=lottery, player=player, status="valid", slot=1, phone_number=phone)


def _run(settings) -> list[str]:
    settings.PHONE_DEFAULT_REGION = "GB"
    lines: list[str] = []
    migration.normalise_phone_numbers(_historical_apps(), report=lines.append)
    return lines


def test_players_and_open_ballots_get_e164_and_a_shared_number_rejects_the_later_ballot(
    settings, make_player, make_lottery
):
    # given players whose numbers were stored as typed, and their ballots in an open lottery:
    # "+44 20 7946 0958" and "020 7946 0958" are one number, on two players' valid ballots
    first = make_player(phone_number="+44 20 7946 0958")
    second = make_player(phone_number="020 7946 0958")
    unreadable = make_player(phone_number="call the office")
    american = make_player(phone_number="+1 (201) 555-0123")
    lottery = make_lottery()
    kept_ballot = _legacy_ballot(lottery, first, first.phone_number)
    shared_ballot = _legacy_ballot(lottery, second, second.phone_number)
    unreadable_ballot = _legacy_ballot(lottery, unreadable, unreadable.phone_number)
    american_ballot = _legacy_ballot(lottery, american, american.phone_number)

    # when the migration runs with PHONE_DEFAULT_REGION=GB
    lines = _run(settings)

    # then every readable number is E.164, on players and ballots
    numbers = dict(
        Player.objects.filter(pk__in=[first.pk, second.pk, unreadable.pk, american.pk]).values_list(
            "pk", "phone_number"
        )
    )
    assert numbers == {
        first.pk: "+442079460958",
        second.pk: "+442079460958",
        unreadable.pk: "call the office",  # kept as it is, and reported
        american.pk: "+12015550123",
    }
    for ballot in (kept_ballot, shared_ballot, unreadable_ballot, american_ballot):
        ballot.refresh_from_db()
    assert (kept_ballot.status, kept_ballot.phone_number) == ("valid", "+442079460958")
    assert (american_ballot.status, american_ballot.phone_number) == ("valid", "+12015550123")
    assert (unreadable_ballot.status, unreadable_ballot.phone_number) == ("valid", "call the office")
    # and the later of the two spellings is rejected, as fraud detection would have done
    assert (shared_ballot.status, shared_ballot.rejection_reason, shared_ballot.slot) == (
        "rejected",
        "shared_phone_number",
        None,
    )
    assert shared_ballot.phone_number == "+442079460958"
    # and the report names what it kept and what it rejected, without the numbers
    assert f"player {unreadable.pk}: phone number ******ce kept as it is (not_a_number)" in lines
    assert f"ballot {unreadable_ballot.pk}: phone number ******ce kept as it is (not_a_number)" in lines
    assert (
        f"lottery {lottery.pk}: ballot {shared_ballot.pk} of player {second.pk} rejected "
        f"(shared_phone_number: +44******958 is on player {first.pk}'s ballot)"
    ) in lines
    assert lines[-1] == (
        "phone numbers as E.164: 3 player(s), 3 ballot(s) in 1 lotteries not yet drawn; "
        "1 ballot(s) rejected as shared_phone_number"
    )
    assert not any("7946" in line for line in lines)


def test_an_e164_number_already_stored_keeps_its_ballot_when_a_later_spelling_arrives_first_in_ids(
    settings, make_player, make_lottery
):
    # given the earlier ballot with the national spelling and the later one already in E.164: rewriting the
    # earlier one first would collide with the later valid ballot, so the rejection must land first
    lottery = make_lottery()
    early = _legacy_ballot(lottery, make_player(phone_number="020 7946 0958"), "020 7946 0958")
    late = _legacy_ballot(lottery, make_player(phone_number="+442079460958"), "+442079460958")

    _run(settings)

    early.refresh_from_db()
    late.refresh_from_db()
    assert (early.status, early.phone_number) == ("valid", "+442079460958")
    assert (late.status, late.rejection_reason) == ("rejected", "shared_phone_number")


def test_ballots_of_drawn_lotteries_are_history_and_stay_as_written(settings, make_player, make_lottery):
    closes_at = timezone.now() - timedelta(minutes=5)
    drawn = make_lottery(closes_at=closes_at)
    players = [make_player(phone_number="+44 20 7946 0958"), make_player(phone_number="020 7946 0958")]
    ballots = [_legacy_ballot(drawn, player, player.phone_number) for player in players]
    lottery_close(lottery_id=drawn.pk, source=TransitionSource.COMMAND)

    _run(settings)

    assert Lottery.objects.get(pk=drawn.pk).state == Lottery.State.DRAWN
    for ballot, written in zip(ballots, ["+44 20 7946 0958", "020 7946 0958"], strict=True):
        ballot.refresh_from_db()
        assert (ballot.status, ballot.phone_number) == ("valid", written)
    assert set(Player.objects.filter(pk__in=[p.pk for p in players]).values_list("phone_number", flat=True)) == {
        "+442079460958"
    }


def test_running_it_again_changes_nothing(settings, make_player, make_lottery):
    lottery = make_lottery()
    for phone in ["+44 20 7946 0958", "020 7946 0958", "+442079460123"]:
        player = make_player(phone_number=phone)
        _legacy_ballot(lottery, player, phone)
    _run(settings)
    before = list(Ballot.objects.order_by("id").values_list("status", "phone_number", "slot"))

    lines = _run(settings)

    assert lines == []
    assert list(Ballot.objects.order_by("id").values_list("status", "phone_number", "slot")) == before


def test_without_a_default_region_a_national_spelling_is_kept_and_reported(settings, make_player):
    player = make_player(phone_number="020 7946 0958")
    settings.PHONE_DEFAULT_REGION = ""
    lines: list[str] = []

    migration.normalise_phone_numbers(_historical_apps(), report=lines.append)

    player.refresh_from_db()
    assert player.phone_number == "020 7946 0958"
    assert lines == [f"player {player.pk}: phone number ******58 kept as it is (country_code_required)"]
