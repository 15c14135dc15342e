"""Lifecycle in the admin: the lottery close actions, and beat's schedule on the periodic tasks page."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from draws.models import Draw
from lotteries.models import Lottery, LotteryTransition
from tests.admin_pages import changelist, messages_of, run_action

# --- Lottery close actions ---------------------------------------------------------


@pytest.mark.django_db
def test_close_due_action_draws_a_due_lottery_with_source_admin(admin_client, staff, make_lottery, make_player, enter):
    # given a lottery whose window ended, with two ballots
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))

    # when staff run "close due" on it
    response = run_action(admin_client, "lotteries_lottery", "close_due", [lottery], index="0")

    # then it is drawn, recorded as an admin action by that staff member
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.DRAWN
    assert Draw.objects.filter(lottery=lottery).count() == 1
    assert list(
        LotteryTransition.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("to_state", "source", "forced", "actor_id")
    ) == [("open", "system", False, None), ("closed", "admin", False, staff.pk), ("drawn", "admin", False, staff.pk)]
    assert f"{lottery.title}: now drawn." in messages_of(admin_client.get(response["Location"]))


@pytest.mark.django_db
def test_close_due_action_refuses_a_lottery_not_due_and_changes_nothing(admin_client, make_lottery, make_player, enter):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    enter(lottery, make_player())

    # when staff run "close due" on it
    response = run_action(admin_client, "lotteries_lottery", "close_due", [lottery], index="0")

    # then it is refused with a message, and nothing changed
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    assert LotteryTransition.objects.filter(lottery=lottery).count() == 1
    assert not Draw.objects.filter(lottery=lottery).exists()
    shown = messages_of(admin_client.get(response["Location"]))
    assert any("entrance window has not ended" in message for message in shown), shown


@pytest.mark.django_db
def test_close_forced_action_draws_before_the_window_ends_and_records_it(
    admin_client, staff, make_lottery, make_player, enter
):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    enter(lottery, make_player())

    # when staff run "force close" on it
    response = run_action(admin_client, "lotteries_lottery", "close_forced", [lottery], index="0")

    # then it is drawn, the early close recorded as forced by that staff member through admin
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.DRAWN
    assert Draw.objects.filter(lottery=lottery).count() == 1
    assert list(
        LotteryTransition.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("to_state", "source", "forced", "actor_id")
    ) == [("open", "system", False, None), ("closed", "admin", True, staff.pk), ("drawn", "admin", False, staff.pk)]


@pytest.mark.django_db
def test_close_action_on_a_drawn_lottery_leaves_it_unchanged(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)
    transitions_before = LotteryTransition.objects.filter(lottery=drawn_lottery).count()

    response = run_action(admin_client, "lotteries_lottery", "close_forced", [drawn_lottery], index="0")

    assert response.status_code == 302
    assert Draw.objects.get(lottery=drawn_lottery) == draw
    assert LotteryTransition.objects.filter(lottery=drawn_lottery).count() == transitions_before
    assert f"{drawn_lottery.title}: already drawn, unchanged." in messages_of(admin_client.get(response["Location"]))


# --- Beat's periodic tasks ---------------------------------------------------------


@pytest.mark.django_db
def test_periodic_tasks_are_not_in_the_database_until_beat_syncs_them(admin_client):
    # given beat has never run against this database
    # when staff open the periodic tasks page
    response = admin_client.get(changelist("django_celery_beat_periodictask"))

    # then the page loads, empty: beat's DatabaseScheduler writes CELERY_BEAT_SCHEDULE when it starts
    assert response.status_code == 200
    assert not PeriodicTask.objects.filter(name__in=["open-daily-lottery", "close-due-lotteries"]).exists()


@pytest.mark.django_db(transaction=True)  # the scheduler calls close_old_connections(), which ends a test transaction
def test_beat_schedule_appears_in_periodic_tasks_once_synced(client, staff):
    # given beat's database scheduler has synced CELERY_BEAT_SCHEDULE, as beat does when it starts
    from lottery_site.celery import app

    scheduler = DatabaseScheduler(app=app)
    try:
        # when staff open the periodic tasks page
        client.force_login(staff)
        response = client.get(changelist("django_celery_beat_periodictask"))
    finally:
        scheduler._finalize()  # sync and unregister now, not when garbage collected during a later test

    # then both schedules are there, once each
    assert response.status_code == 200
    synced = PeriodicTask.objects.filter(name__in=["open-daily-lottery", "close-due-lotteries"])
    assert sorted(synced.values_list("name", "task", "enabled")) == [
        ("close-due-lotteries", "lifecycle.tasks.close_due_lotteries", True),
        ("open-daily-lottery", "lifecycle.tasks.open_daily_lottery", True),
    ]
    html = response.content.decode()
    assert html.count(">open-daily-lottery<") == 1
    assert html.count(">close-due-lotteries<") == 1
