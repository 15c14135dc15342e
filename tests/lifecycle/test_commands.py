"""Lifecycle management commands: close_lotteries and seed_demo."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from draws.models import Draw, LotteryAward
from entries.models import Ballot, Player
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import Lottery, LotteryTransition, TransitionSource
from lotteries.services import day_bounds, lottery_today
from tests.commands import run


def state_of(lottery: Lottery) -> str:
    lottery.refresh_from_db()
    return lottery.state


def transitions(lottery: Lottery) -> list[tuple[str, str, bool]]:
    return list(
        LotteryTransition.objects.filter(lottery=lottery).order_by("id").values_list("to_state", "source", "forced")
    )


@pytest.fixture
def due_lottery(make_lottery, make_player, enter):
    """A drop whose window ended ten minutes ago, with one ballot."""
    closes_at = timezone.now() - timedelta(minutes=10)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    return lottery


# --- close_lotteries ---------------------------------------------------------------


@pytest.mark.django_db
def test_close_lotteries_by_default_closes_only_due_lotteries(due_lottery, make_lottery, make_player, enter):
    # given a due lottery, a due lottery nobody entered, and a lottery still open for an hour
    empty = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))
    not_due = make_lottery()
    enter(not_due, make_player())

    # when the command runs without arguments
    out, err = run("close_lotteries")

    # then the due ones are drawn or cancelled, by the command, and the other is untouched
    assert state_of(due_lottery) == Lottery.State.DRAWN
    assert state_of(empty) == Lottery.State.CANCELLED
    assert state_of(not_due) == Lottery.State.OPEN
    assert transitions(due_lottery) == [
        ("open", "system", False),
        ("closed", "command", False),
        ("drawn", "command", False),
    ]
    assert transitions(not_due) == [("open", "system", False)]
    draw = Draw.objects.get(lottery=due_lottery)
    assert (
        f"#{due_lottery.pk} {due_lottery.title}: drawn (draw {draw.pk}, winning ballots {draw.winning_ballot_ids[0]})."
        in out
    )
    assert f"#{empty.pk} {empty.title}: cancelled, no valid ballots." in out
    assert f"#{not_due.pk}" not in out
    assert err == ""


@pytest.mark.django_db
def test_close_lotteries_with_nothing_due_says_so(make_lottery):
    lottery = make_lottery()

    out, _err = run("close_lotteries")

    assert out == "Nothing to close.\n"
    assert state_of(lottery) == Lottery.State.OPEN


@pytest.mark.django_db
def test_close_lotteries_twice_draws_once(due_lottery):
    run("close_lotteries")
    draw = Draw.objects.get(lottery=due_lottery)

    out, _err = run("close_lotteries", "--lottery", str(due_lottery.pk))

    assert f"#{due_lottery.pk} {due_lottery.title}: already drawn, unchanged." in out
    assert Draw.objects.get(lottery=due_lottery) == draw
    assert LotteryAward.objects.filter(lottery=due_lottery).count() == 1


@pytest.mark.django_db
def test_close_lotteries_with_date_closes_the_daily_lottery_of_that_date(make_player, enter, make_lottery):
    # given yesterday's daily lottery with a ballot, a drop that closed yesterday,
    # and lotteries of the day before that are also due
    yesterday = lottery_today() - timedelta(days=1)
    start, _end = day_bounds(yesterday)
    daily = daily_lottery_open(day=yesterday, source=TransitionSource.SYSTEM)
    enter(daily, make_player(), now=start + timedelta(hours=9))
    drop = make_lottery(closes_at=start + timedelta(hours=20))
    enter(drop, make_player(), now=start + timedelta(hours=19))
    older_daily = daily_lottery_open(day=yesterday - timedelta(days=1), source=TransitionSource.SYSTEM)
    older_drop = make_lottery(closes_at=start - timedelta(hours=1))

    # when the command closes yesterday's date
    out, err = run("close_lotteries", "--date", yesterday.isoformat())

    # then yesterday's lotteries are drawn by the command, and the older ones, though due, are untouched
    assert state_of(daily) == Lottery.State.DRAWN
    assert state_of(drop) == Lottery.State.DRAWN
    assert transitions(daily) == [("open", "system", False), ("closed", "command", False), ("drawn", "command", False)]
    assert state_of(older_daily) == Lottery.State.OPEN
    assert state_of(older_drop) == Lottery.State.OPEN
    assert f"#{daily.pk} Daily lottery {yesterday.isoformat()}: drawn" in out
    assert f"#{drop.pk} {drop.title}: drawn" in out
    assert err == ""


@pytest.mark.django_db
def test_close_lotteries_with_date_of_today_refuses_the_open_daily_lottery(make_player, enter):
    # given today's daily lottery, whose window ends at midnight
    today = lottery_today()
    daily = daily_lottery_open(day=today, source=TransitionSource.SYSTEM)
    enter(daily, make_player())

    # when the command closes today's date without --force
    with pytest.raises(CommandError, match=r"^1 lottery\(ies\) could not be closed\.$"):
        run("close_lotteries", "--date", today.isoformat())

    # then it is refused and nothing changed
    assert state_of(daily) == Lottery.State.OPEN
    assert transitions(daily) == [("open", "system", False)]


@pytest.mark.django_db
def test_close_lotteries_with_a_date_without_lotteries_says_nothing_to_close():
    out, _err = run("close_lotteries", "--date", "2001-01-01")

    assert out == "Nothing to close.\n"


@pytest.mark.django_db
def test_close_lotteries_with_lottery_closes_only_that_lottery(due_lottery, make_lottery, make_player, enter):
    # given two due lotteries
    closes_at = timezone.now() - timedelta(minutes=3)
    other = make_lottery(closes_at=closes_at)
    enter(other, make_player(), now=closes_at - timedelta(minutes=1))

    # when the command closes one of them by id
    out, _err = run("close_lotteries", "--lottery", str(due_lottery.pk))

    # then only that one is drawn
    assert state_of(due_lottery) == Lottery.State.DRAWN
    assert state_of(other) == Lottery.State.OPEN
    assert f"#{due_lottery.pk} {due_lottery.title}: drawn" in out
    assert f"#{other.pk}" not in out


@pytest.mark.django_db
def test_close_lotteries_with_an_unknown_lottery_fails_clearly():
    out = StringIO()
    err = StringIO()

    with pytest.raises(CommandError, match=r"^1 lottery\(ies\) could not be closed\.$"):
        call_command("close_lotteries", "--lottery", "987654", stdout=out, stderr=err)

    assert err.getvalue() == "#987654: No such lottery.\n"


@pytest.mark.django_db
def test_close_lotteries_dry_run_changes_nothing_and_prints_what_it_would_do(due_lottery, make_lottery):
    # given a due lottery and a lottery still open
    not_due = make_lottery()

    # when the command runs with --dry-run, by default and for the open lottery
    out, err = run("close_lotteries", "--dry-run")
    out_not_due, _ = run("close_lotteries", "--dry-run", "--lottery", str(not_due.pk))
    out_forced, _ = run("close_lotteries", "--dry-run", "--force", "--lottery", str(not_due.pk))

    # then it says what it would do, and nothing changed
    assert out.startswith(f"#{due_lottery.pk} {due_lottery.title} [open, closes ")
    assert out.endswith("]: would close and draw\n")
    assert out.count("\n") == 1
    assert out_not_due.endswith("]: would refuse (window not ended; --force to close)\n")
    assert out_forced.endswith("]: would close and draw\n")
    assert err == ""
    assert state_of(due_lottery) == Lottery.State.OPEN
    assert state_of(not_due) == Lottery.State.OPEN
    assert transitions(due_lottery) == [("open", "system", False)]
    assert Draw.objects.count() == 0


@pytest.mark.django_db
def test_close_lotteries_dry_run_of_a_drawn_lottery_says_nothing_to_do(due_lottery):
    lottery_close(lottery_id=due_lottery.pk, source=TransitionSource.SYSTEM)

    out, _err = run("close_lotteries", "--dry-run", "--lottery", str(due_lottery.pk))

    assert out.endswith("[drawn, closes " + f"{due_lottery.closes_at:%Y-%m-%d %H:%M %Z}" + "]: nothing to do\n")


@pytest.mark.django_db
def test_close_lotteries_dry_run_of_an_unknown_lottery_fails_clearly():
    with pytest.raises(CommandError, match=r"^No lottery with id 987654\.$"):
        run("close_lotteries", "--dry-run", "--lottery", "987654")


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["2024-13-01", "tomorrow", "01/02/2024", "2024-02-30"])
def test_close_lotteries_with_a_bad_date_gives_a_clear_usage_error(due_lottery, bad):
    with pytest.raises(CommandError) as raised:
        run("close_lotteries", "--date", bad)

    assert str(raised.value) == f"Error: argument --date: {bad!r} is not a date in the form YYYY-MM-DD"
    assert state_of(due_lottery) == Lottery.State.OPEN


@pytest.mark.django_db
def test_close_lotteries_refuses_date_and_lottery_together(due_lottery):
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("close_lotteries", "--date", "2024-01-01", "--lottery", str(due_lottery.pk))

    assert state_of(due_lottery) == Lottery.State.OPEN


@pytest.mark.django_db
def test_close_lotteries_refuses_a_lottery_not_due_without_force(make_lottery, make_player, enter):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    enter(lottery, make_player())

    # when the command closes it without --force
    err = StringIO()
    with pytest.raises(CommandError, match=r"^1 lottery\(ies\) could not be closed\.$"):
        call_command("close_lotteries", "--lottery", str(lottery.pk), stdout=StringIO(), stderr=err)

    # then it says why, and nothing changed
    assert err.getvalue() == (
        f"#{lottery.pk}: The lottery's entrance window has not ended; only staff can force an early close.\n"
    )
    assert state_of(lottery) == Lottery.State.OPEN
    assert transitions(lottery) == [("open", "system", False)]
    assert not Draw.objects.filter(lottery=lottery).exists()


@pytest.mark.django_db
def test_close_lotteries_with_force_closes_a_lottery_not_due_and_records_it(make_lottery, make_player, enter):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    ballot = enter(lottery, make_player())

    # when the command closes it with --force
    out, _err = run("close_lotteries", "--force", "--lottery", str(lottery.pk))

    # then it is drawn, the early close recorded as forced by the command
    assert state_of(lottery) == Lottery.State.DRAWN
    assert transitions(lottery) == [("open", "system", False), ("closed", "command", True), ("drawn", "command", False)]
    draw = Draw.objects.get(lottery=lottery)
    assert list(draw.winning_ballot_ids) == [ballot.pk]
    assert f"drawn (draw {draw.pk}, winning ballots {ballot.pk})." in out


# --- seed_demo ---------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_is_idempotent():
    # when the demo seed runs twice
    first_out, _ = run("seed_demo")
    second_out, _ = run("seed_demo")

    # then there is one staff 'admin' and five players
    staff = Player.objects.get(username="admin")
    assert staff.is_staff is True
    assert staff.is_superuser is True
    assert Player.objects.count() == 6
    players = Player.objects.exclude(username="admin")
    assert sorted(players.values_list("username", flat=True)) == ["alice", "bob", "carol", "dave", "erin"]
    assert not players.filter(is_staff=True).exists()

    # and yesterday's daily lottery is drawn, once
    today = lottery_today()
    yesterday = Lottery.objects.get(kind=Lottery.Kind.DAILY, day=today - timedelta(days=1))
    assert yesterday.state == Lottery.State.DRAWN
    assert Draw.objects.filter(lottery=yesterday).count() == 1
    assert LotteryAward.objects.filter(lottery=yesterday).count() == 1
    assert yesterday.ballots.filter(status=Ballot.Status.VALID).count() == 5
    assert [t[0] for t in transitions(yesterday)] == ["open", "closed", "drawn"]

    # and today's is open with three ballots
    current = Lottery.objects.get(kind=Lottery.Kind.DAILY, day=today)
    assert current.state == Lottery.State.OPEN
    assert current.ballots.count() == 3
    assert current.ballots.filter(status=Ballot.Status.VALID).count() == 3
    assert sorted(current.ballots.values_list("player__username", flat=True)) == ["alice", "bob", "carol"]

    # and one demo drop waits to open a minute after the first run, for four minutes
    drop = Lottery.objects.get(kind=Lottery.Kind.DROP)
    assert (drop.state, drop.prize_quantity, drop.alternates_count) == (Lottery.State.SCHEDULED, 2, 1)
    assert drop.closes_at - drop.opens_at == timedelta(minutes=4)
    assert f"drop #{drop.pk} (scheduled)" in second_out

    # and nothing else was created
    assert Lottery.objects.count() == 3
    assert Draw.objects.count() == 1
    assert Ballot.objects.count() == 8
    assert "Demo data ready." in first_out
    assert "Demo data ready." in second_out
    assert f"today's lottery: #{current.pk}; yesterday's: #{yesterday.pk} (drawn)" in second_out


@pytest.mark.django_db
def test_seed_demo_keeps_the_admin_password_after_a_change(monkeypatch):
    # given the demo was seeded and staff then changed the admin password
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo-admin")
    run("seed_demo")
    staff = Player.objects.get(username="admin")
    staff.set_password("changed-by-staff")
    staff.save()

    # when it is seeded again
    out, _ = run("seed_demo")

    # then the changed password stands, and is not printed
    staff.refresh_from_db()
    assert staff.check_password("changed-by-staff")
    assert "admin / (unchanged)" in out
