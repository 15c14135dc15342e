"""The database draw path: same winners as the pure function, awards, verification, immutability."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from draws import algorithm
from draws.models import Draw, LotteryAward, LotterySeed
from draws.services import draw_verify
from entries.errors import DuplicateEntry
from entries.models import Ballot
from lifecycle.services import lottery_close
from lotteries.models import Lottery

pytestmark = pytest.mark.django_db


@pytest.fixture
def drawn(make_lottery, make_player, enter):
    """A lottery of 25 ballots, three winners, closed and drawn through the real path."""

    def make(*, ballots: int = 25, winners_count: int = 3) -> Draw:
        closes_at = timezone.now() - timedelta(minutes=1)
        lottery = make_lottery(closes_at=closes_at, winners_count=winners_count)
        for _ in range(ballots):
            enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
        outcome = lottery_close(lottery_id=lottery.pk, source="command")
        assert outcome.draw is not None
        return outcome.draw

    return make


def test_database_draw_picks_what_the_pure_function_picks(drawn):
    draw = drawn()
    seed = bytes(LotterySeed.objects.get(lottery=draw.lottery_id).seed)
    ballot_ids = list(
        Ballot.objects.filter(lottery_id=draw.lottery_id, status="valid").order_by("id").values_list("id", flat=True)
    )

    reference = algorithm.draw(seed=seed, ballot_ids=ballot_ids, winners_count=3)

    assert draw.entries_digest == reference.entries_digest
    assert draw.entries_count == 25
    assert list(draw.winning_ballot_ids) == reference.winning_ballot_ids
    assert draw.seed == seed.hex()
    assert draw.seed_commitment == algorithm.commitment(seed) == draw.lottery.seed_commitment
    assert draw.algorithm_version == algorithm.ALGORITHM_VERSION


def test_draw_creates_one_played_out_award_per_winner_in_rank_order(drawn):
    draw = drawn()

    awards = list(LotteryAward.objects.filter(draw=draw).order_by("rank"))

    assert [a.ballot_id for a in awards] == list(draw.winning_ballot_ids)
    assert [a.rank for a in awards] == [1, 2, 3]
    assert {a.status for a in awards} == {"played_out"}
    assert all(a.player_id == Ballot.objects.get(pk=a.ballot_id).player_id for a in awards)
    assert {a.prize for a in awards} == {"A test prize"}
    assert Lottery.objects.get(pk=draw.lottery_id).state == "drawn"


def test_only_valid_ballots_take_part(make_lottery, make_player, enter):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    before = closes_at - timedelta(minutes=5)
    valid = enter(lottery, make_player(), now=before)
    # A second player sharing the first one's phone is rejected as fraud.
    cheater = make_player(phone_number=valid.player.phone_number)
    with pytest.raises(DuplicateEntry):
        enter(lottery, cheater, now=before)

    draw = lottery_close(lottery_id=lottery.pk, source="command").draw

    assert draw is not None
    assert draw.entries_count == 1
    assert list(draw.winning_ballot_ids) == [valid.pk]


def test_lottery_without_valid_ballots_is_cancelled_without_a_draw(make_lottery):
    lottery = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))

    outcome = lottery_close(lottery_id=lottery.pk, source="command")

    assert outcome.draw is None
    assert Lottery.objects.get(pk=lottery.pk).state == "cancelled"
    assert not Draw.objects.filter(lottery=lottery).exists()
    assert list(lottery.transitions.values_list("to_state", "note")) == [
        ("open", ""),
        ("closed", ""),
        ("cancelled", "no valid ballots"),
    ]


def test_verification_of_an_untouched_draw_matches(drawn):
    result = draw_verify(draw=drawn())

    assert result.matches
    assert result.commitment_matches and result.entries_digest_matches and result.winners_match


def test_verification_fails_when_a_ballot_id_is_altered(drawn):
    draw = drawn()
    loser = (
        Ballot.objects.filter(lottery_id=draw.lottery_id, status="valid")
        .exclude(pk__in=draw.winning_ballot_ids)
        .order_by("id")
        .first()
    )
    assert loser is not None
    with connection.cursor() as cursor:
        cursor.execute("UPDATE entries_ballot SET id = id + 1000000 WHERE id = %s", [loser.pk])

    result = draw_verify(draw=draw)

    assert not result.matches
    assert not result.entries_digest_matches
    assert result.commitment_matches


def test_verification_fails_when_a_ballot_is_slipped_in_after_the_draw(drawn, make_player):
    draw = drawn()
    Ballot.objects.create(lottery_id=draw.lottery_id, player=make_player(), status="valid", slot=1)

    result = draw_verify(draw=draw)

    assert not result.matches
    assert not result.entries_digest_matches


def test_verification_fails_when_the_seed_is_altered(drawn):
    draw = drawn()
    altered = Draw.objects.get(pk=draw.pk)
    altered.seed = algorithm.new_seed().hex()  # in memory only: the record itself cannot change

    result = draw_verify(draw=altered)

    assert not result.matches
    assert not result.commitment_matches


def test_a_draw_record_cannot_be_changed_or_deleted(drawn):
    draw = drawn()

    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        Draw.objects.filter(pk=draw.pk).update(seed="00" * 32)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM draws_draw WHERE id = %s", [draw.pk])

    assert Draw.objects.get(pk=draw.pk).seed == draw.seed
    assert LotteryAward.objects.filter(draw=draw).count() == 3
