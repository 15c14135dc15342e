"""Beat opens today's lottery and draws yesterday's at midnight, through a real worker and Redis."""

import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from lifecycle.services import daily_lottery_open
from lifecycle.tasks import close_due_lotteries, open_daily_lottery
from lotteries.models import Lottery
from lotteries.services import lottery_today
from lottery_site.celery import app


@pytest.mark.django_db
def test_opening_task_creates_todays_lottery_once():
    first = open_daily_lottery()
    second = open_daily_lottery()

    assert first == second
    lottery = Lottery.objects.get(pk=first)
    assert (lottery.kind, lottery.day, lottery.state) == ("daily", lottery_today(), "open")


@pytest.mark.django_db(transaction=True)  # the scheduler closes connections between syncs
def test_the_beat_schedule_is_stored_for_admin_with_midnight_and_sweep_entries():
    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler.setup_schedule()

    tasks = {t.name: t for t in PeriodicTask.objects.filter(name__in=["open-daily-lottery", "close-due-lotteries"])}
    assert set(tasks) == {"open-daily-lottery", "close-due-lotteries"}
    assert tasks["open-daily-lottery"].task == "lifecycle.tasks.open_daily_lottery"
    assert tasks["close-due-lotteries"].task == "lifecycle.tasks.close_due_lotteries"
    # Every minute, midnight included, in the lottery's time zone.
    sweep = tasks["close-due-lotteries"].crontab
    assert (sweep.minute, sweep.hour) == ("*", "*")
    assert str(sweep.timezone) == "UTC"


@pytest.mark.django_db
def test_the_sweep_queues_only_lotteries_whose_window_ended(make_player, enter):
    today = lottery_today()
    yesterday = daily_lottery_open(day=today - timedelta(days=1))
    current = daily_lottery_open(day=today)

    assert close_due_lotteries.run() == [yesterday.pk]
    assert Lottery.objects.get(pk=current.pk).state == "open"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_real_worker_draws_yesterdays_lottery_when_the_sweep_runs(kafka_broker, make_player, enter):
    today = lottery_today()
    yesterday = daily_lottery_open(day=today - timedelta(days=1))
    ballots = [enter(yesterday, make_player(), now=yesterday.closes_at - timedelta(hours=1)) for _ in range(3)]
    current = daily_lottery_open(day=today)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        close_due_lotteries.delay()
        deadline = time.monotonic() + 30
        while Lottery.objects.get(pk=yesterday.pk).state != "drawn" and time.monotonic() < deadline:
            time.sleep(0.1)

    yesterday.refresh_from_db()
    assert yesterday.state == "drawn"
    assert yesterday.draw.winning_ballot_ids[0] in {b.pk for b in ballots}
    assert set(yesterday.transitions.exclude(to_state="open").values_list("source", flat=True)) == {"beat"}
    assert Lottery.objects.get(pk=current.pk).state == "open"
