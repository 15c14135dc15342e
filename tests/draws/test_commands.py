"""The verify_draw management command."""

from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from lifecycle.services import lottery_close
from lotteries.models import TransitionSource
from tests.commands import run


@pytest.fixture
def due_lottery(make_lottery, make_player, enter):
    """A drop whose window ended ten minutes ago, with one ballot."""
    closes_at = timezone.now() - timedelta(minutes=10)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    return lottery


@pytest.mark.django_db
def test_verify_draw_prints_that_the_draw_verifies(due_lottery):
    # given a drawn lottery
    draw = lottery_close(lottery_id=due_lottery.pk, source=TransitionSource.SYSTEM).draw
    assert draw is not None

    # when its draw is verified
    out, _err = run("verify_draw", str(draw.pk))

    # then every part matches
    lines = out.splitlines()
    assert lines[0] == f"Draw {draw.pk} of lottery {due_lottery.pk} ({draw.algorithm_version}), 1 entries"
    assert lines[1] == f"ok       commitment: sha256(seed) = {draw.seed_commitment}"
    assert lines[2] == f"ok       entries digest: recorded {draw.entries_digest}, recomputed {draw.entries_digest}"
    assert (
        lines[3]
        == f"ok       winners: recorded {list(draw.winning_ballot_ids)}, recomputed {list(draw.winning_ballot_ids)}"
    )
    assert lines[4] == "ok       alternates: recorded [], recomputed []"
    assert lines[5] == "The draw verifies."
    assert len(lines) == 6


@pytest.mark.django_db
def test_verify_draw_of_an_unknown_draw_raises_command_error():
    with pytest.raises(CommandError, match=r"^No draw with id 987654\.$"):
        run("verify_draw", "987654")


@pytest.mark.django_db
def test_verify_draw_with_a_non_numeric_id_gives_a_usage_error():
    with pytest.raises(CommandError, match="invalid int value"):
        run("verify_draw", "abc")
