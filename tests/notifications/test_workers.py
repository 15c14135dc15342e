"""SMS through real Celery workers on the notifications queue: once, even across redeliveries and a SIGKILL.

The gateway is the simulated one, its latency and failure rate set live in
the database (``core.live``), as staff would in admin: a running worker sees
a change within LIVE_SETTINGS_REFRESH_SECONDS.
"""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from entries.models import Player
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.services import lottery_today
from lottery_site.celery import app
from notifications.models import Broadcast, GatewayMessage, Notification
from notifications.services import broadcast_create, notifications_sweep
from notifications.tasks import send_notification
from tests.concurrency import Worker, wait_for
from tests.sms import fast_gateway, notifications_worker, players_with_phones

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def empty_queue() -> None:
    """Sends queued by earlier tests (whose rows are gone) are not this test's."""
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(settings.NOTIFICATIONS_QUEUE)  # type: ignore[attr-defined]


def drawn_yesterday(make_player, enter, entrants: int = 3) -> Notification:
    """Yesterday's daily lottery, drawn by beat's close (committed, so its kick is queued); its winner's SMS."""
    lottery = daily_lottery_open(day=lottery_today() - timedelta(days=1))
    for _ in range(entrants):
        enter(lottery, make_player(), now=lottery.closes_at - timedelta(hours=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.BEAT)
    return Notification.objects.get(lottery=lottery, kind="winner")


def state_of(notification: Notification) -> str:
    return Notification.objects.get(pk=notification.pk).state


def test_a_drawn_daily_lottery_sends_its_winner_one_sms_even_when_the_task_comes_three_times(make_player, enter):
    fast_gateway()

    with notifications_worker():
        notification = drawn_yesterday(make_player, enter)  # the close's commit queues the send
        wait_for(lambda: state_of(notification) == "sent", 30, "the winner's SMS")
        send_notification.delay(notification.pk)  # redelivered after a visibility timeout
        send_notification.delay(notification.pk)
        assert notifications_sweep() == 0  # nothing due: the sweep queues nothing
        time.sleep(2)

    notification.refresh_from_db()
    assert notification.attempts == 1
    assert list(GatewayMessage.objects.values_list("idempotency_key", "gateway_message_id")) == [
        (notification.idempotency_key, notification.gateway_message_id)
    ]


LEASE = {"SMS_SEND_LEASE_SECONDS": "8", "LIVE_SETTINGS_REFRESH_SECONDS": "1"}


@override_settings(SMS_SEND_LEASE_SECONDS=8)  # the sweep's lease, as the workers' below
@pytest.mark.parametrize("moment", ["before the gateway took it", "after the gateway took it"])
def test_a_worker_killed_mid_send_leaves_exactly_one_sms_at_the_gateway(moment, make_player, enter):
    # Six seconds per message: the gateway takes it after three, and answers three seconds later.
    fast_gateway(SMS_LATENCY_MIN_MS=6000, SMS_LATENCY_MAX_MS=6000)
    first = Worker(**LEASE)
    try:
        notification = drawn_yesterday(make_player, enter)
        key = notification.idempotency_key
        if moment == "after the gateway took it":
            wait_for(lambda: GatewayMessage.objects.filter(idempotency_key=key).exists(), 60, "the gateway to take it")
        else:
            wait_for(lambda: state_of(notification) == "sending", 60, "the worker to take the message")
            assert not GatewayMessage.objects.filter(idempotency_key=key).exists()
        first.kill()
    finally:
        first_log = first.stop()
    assert state_of(notification) == "sending", first_log  # the dead worker's row, under its lease

    fast_gateway()  # the next worker sends at once
    second = Worker(**LEASE)
    try:
        deadline = time.monotonic() + 60
        while state_of(notification) != "sent":  # beat's sweep, every second: it queues the row once its lease ends
            assert time.monotonic() < deadline, "the message was not sent again after its lease"
            notifications_sweep()
            time.sleep(1)
    finally:
        second_log = second.stop()

    notification.refresh_from_db()
    messages = list(GatewayMessage.objects.filter(idempotency_key=key))
    assert len(messages) == 1, second_log
    assert notification.gateway_message_id == messages[0].gateway_message_id
    assert notification.attempts == 2
    assert GatewayMessage.objects.count() == 1


@override_settings(SMS_RETRY_BACKOFF_MS=200, SMS_RETRY_BACKOFF_MAX_MS=1000)
def test_a_failing_gateway_gives_retries_then_failed_and_a_resend_from_admin_delivers_it_once(make_player, enter):
    fast_gateway(SMS_FAILURE_RATE=1, SMS_MAX_ATTEMPTS=3)
    operator = make_player(is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__in=["view_notification", "resend_notification"]))
    browser = Client()
    browser.force_login(operator)

    with notifications_worker():
        notification = drawn_yesterday(make_player, enter)
        wait_for(lambda: state_of(notification) == "failed", 30, "the retries to run out")
        notification.refresh_from_db()
        assert (notification.attempts, notification.last_error) == (3, "simulated delivery failure")
        assert not GatewayMessage.objects.exists()

        fast_gateway(SMS_FAILURE_RATE=0)  # the gateway is back
        response = browser.post(
            reverse("admin:notifications_notification_changelist"),
            {"action": "resend", ACTION_CHECKBOX_NAME: [notification.pk], "index": "0"},
        )
        assert response.status_code == 302
        wait_for(lambda: state_of(notification) == "sent", 30, "the re-sent SMS")
        send_notification.delay(notification.pk)
        time.sleep(1)

    notification.refresh_from_db()
    assert (notification.attempts, notification.resent_by_id) == (1, operator.pk)
    assert GatewayMessage.objects.get().gateway_message_id == notification.gateway_message_id


BATCH = 50


@override_settings(SMS_BROADCAST_BATCH=BATCH, SMS_BATCH_CHAINS=4)
def test_a_winners_sms_goes_ahead_of_the_queued_batches_of_a_broadcast(make_lottery, make_player, enter):
    # One process, four chains of 400 ms batches: while one batch runs, three wait in the queue.
    # The winner's single send must wait for the running batch only, not behind the three.
    fast_gateway(SMS_BATCH_LATENCY_MIN_MS=400, SMS_BATCH_LATENCY_MAX_MS=400)
    drop = make_lottery(kind=Lottery.Kind.DROP)
    fans = players_with_phones(40 * BATCH, prefix="fan")

    def broadcast_sent() -> int:
        return Notification.objects.filter(kind="broadcast", state="sent").count()

    with notifications_worker():
        with transaction.atomic():
            broadcast_create(
                lottery=drop,
                players=Player.objects.filter(pk__in=[p.pk for p in fans]),
                body="A drop opens soon",
                now=timezone.now(),
            )
        wait_for(lambda: broadcast_sent() >= 2 * BATCH, 60, "the broadcast's first batches")
        notification = drawn_yesterday(make_player, enter)  # its commit queues the winner's send
        before = broadcast_sent()  # read once it is queued: a batch that ended meanwhile is not held against it
        wait_for(lambda: state_of(notification) == "sent", 60, "the winner's SMS")
        notification.refresh_from_db()
        ahead = Notification.objects.filter(kind="broadcast", state="sent", sent_at__lte=notification.sent_at).count()

    assert Broadcast.objects.get(pk=drop.pk).remaining > 0, "the broadcast ended before the winner's SMS was queued"
    # At most the batch running when it was queued; in the order of the queue it would have waited
    # for three more (two, should the running one have ended between the commit and the count).
    assert ahead - before <= BATCH, (before, ahead)
