"""Closing and drawing: atomic, guarded, idempotent, recorded, whoever calls it and however often."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from draws.models import Draw, LotteryAward
from lifecycle.services import daily_lottery_open, lottery_close
from lifecycle.tasks import close_lottery
from lotteries.errors import LotteryNotDue, LotteryNotFound
from lotteries.models import Lottery, LotteryTransition
from tests.concurrency import manage_py, run_together


@pytest.fixture
def due_lottery(make_lottery, make_player, enter):
    """A lottery whose window ended a minute ago, with five valid ballots and two winners to draw."""
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at, winners_count=2)
    for _ in range(5):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=10))
    return lottery


def assert_drawn_exactly_once(lottery: Lottery) -> None:
    lottery.refresh_from_db()
    assert lottery.state == "drawn"
    assert Draw.objects.filter(lottery=lottery).count() == 1
    assert LotteryAward.objects.filter(lottery=lottery).count() == 2
    assert list(lottery.transitions.order_by("id").values_list("to_state", flat=True)) == [
        "open",
        "closed",
        "drawn",
    ]


@pytest.mark.django_db
def test_closing_twice_draws_once_and_the_second_call_changes_nothing(due_lottery):
    first = lottery_close(lottery_id=due_lottery.pk, source="command")
    second = lottery_close(lottery_id=due_lottery.pk, source="beat")

    assert first.changed and first.draw is not None
    assert not second.changed
    assert second.draw == first.draw
    assert_drawn_exactly_once(due_lottery)
    assert set(due_lottery.transitions.exclude(to_state="open").values_list("source", flat=True)) == {"command"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_closes_from_four_threads_draw_exactly_once(due_lottery):
    results = run_together(*[lambda: lottery_close(lottery_id=due_lottery.pk, source="beat")] * 4)

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.changed for r in results) == 1
    assert len({r.draw.pk for r in results}) == 1
    assert_drawn_exactly_once(due_lottery)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_beat_task_and_two_command_processes_at_once_draw_exactly_once(due_lottery):
    commands = [manage_py("close_lotteries", "--lottery", str(due_lottery.pk)) for _ in range(2)]
    beat = run_together(
        lambda: close_lottery.apply(args=(due_lottery.pk,)).get(),
        lambda: close_lottery.apply(args=(due_lottery.pk,)).get(),
    )
    outputs = [command.wait(timeout=60) for command in commands]

    assert [code for code, _, _ in outputs] == [0, 0], outputs
    assert beat == ["drawn", "drawn"]
    assert_drawn_exactly_once(due_lottery)
    # Whoever won the race is recorded; the others found it drawn.
    sources = set(due_lottery.transitions.exclude(to_state="open").values_list("source", flat=True))
    assert len(sources) == 1 and sources <= {"beat", "command"}


@pytest.mark.django_db
def test_closing_before_the_window_ends_is_refused_and_changes_nothing(make_lottery):
    lottery = make_lottery(closes_at=timezone.now() + timedelta(hours=1))

    with pytest.raises(LotteryNotDue):
        lottery_close(lottery_id=lottery.pk, source="api")

    lottery.refresh_from_db()
    assert lottery.state == "open"
    assert list(lottery.transitions.values_list("to_state", flat=True)) == ["open"]


@pytest.mark.django_db
def test_a_forced_early_close_is_recorded_with_its_source_and_actor(make_lottery, make_player, enter):
    staff = make_player(roles=["operations"])
    lottery = make_lottery(closes_at=timezone.now() + timedelta(hours=1))
    enter(lottery, make_player())

    outcome = lottery_close(lottery_id=lottery.pk, source="admin", actor=staff, force=True)

    assert outcome.lottery.state == "drawn"
    closed = LotteryTransition.objects.get(lottery=lottery, to_state="closed")
    assert (closed.from_state, closed.source, closed.actor, closed.forced) == ("open", "admin", staff, True)
    drawn = LotteryTransition.objects.get(lottery=lottery, to_state="drawn")
    assert (drawn.from_state, drawn.source, drawn.forced) == ("closed", "admin", False)


@pytest.mark.django_db
def test_closing_an_unknown_lottery_is_a_clear_error():
    with pytest.raises(LotteryNotFound):
        lottery_close(lottery_id=987654, source="command")


@pytest.mark.django_db
@override_settings(LOTTERY_TIME_ZONE="Asia/Tokyo", DAILY_LOTTERY_PRIZE="Tokyo prize")
def test_daily_lottery_spans_its_calendar_day_in_the_lottery_time_zone():
    lottery = daily_lottery_open(day=date(2026, 3, 14))

    tokyo = ZoneInfo("Asia/Tokyo")
    assert lottery.kind == "daily"
    assert lottery.opens_at == datetime(2026, 3, 14, tzinfo=tokyo)
    assert lottery.closes_at == datetime(2026, 3, 15, tzinfo=tokyo)
    assert lottery.prize == "Tokyo prize"
    assert len(lottery.seed_commitment) == 64
    assert lottery.transitions.get().source == "beat"


@pytest.mark.django_db(transaction=True)
def test_opening_the_daily_lottery_concurrently_creates_one():
    day = date(2026, 5, 1)

    results = run_together(*[lambda: daily_lottery_open(day=day)] * 4)

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({r.pk for r in results}) == 1
    assert Lottery.objects.filter(kind="daily", day=day).count() == 1
