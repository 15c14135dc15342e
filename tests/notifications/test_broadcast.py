"""A broadcast: one SMS to each chosen player, in batches, with its progress, and once even across a SIGKILL."""

import time

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from entries.models import Player
from lotteries.models import Lottery
from notifications.messages import drop_opening_body
from notifications.models import Broadcast, GatewayMessage, Notification
from notifications.services import (
    broadcast_create,
    notification_batch_send,
    notification_resend,
    notifications_sweep,
)
from tests.concurrency import Worker, wait_for
from tests.notifications.test_workers import LEASE
from tests.sms import fast_gateway, players_with_phones

PLAYERS = 10_000


@pytest.mark.django_db
@override_settings(SMS_BROADCAST_BATCH=4)
def test_a_broadcast_writes_one_sms_per_chosen_player_once_and_records_its_progress(make_lottery):
    fast_gateway()
    drop = make_lottery(kind=Lottery.Kind.DROP)
    chosen = players_with_phones(10, prefix="fan")
    players_with_phones(3, prefix="other")
    silent = Player.objects.create(username="no-phone", password="!")
    audience = Player.objects.filter(pk__in=[p.pk for p in chosen] + [silent.pk])

    with transaction.atomic():
        first = broadcast_create(lottery=drop, players=audience, body=drop_opening_body(drop), now=timezone.now())
        again = broadcast_create(lottery=drop, players=audience, body="another text", now=timezone.now())

    assert again.pk == first.pk and first.total == 10
    assert set(Notification.objects.filter(kind="broadcast").values_list("player_id", flat=True)) == {
        p.pk for p in chosen
    }
    batches = []
    while (outcome := notification_batch_send(lottery_id=drop.pk, kind="broadcast")).taken:
        batches.append(outcome.sent)
        progress = Broadcast.objects.get(pk=drop.pk)
        assert (progress.sent, progress.remaining) == (sum(batches), 10 - sum(batches))
    assert batches == [4, 4, 2]
    progress = Broadcast.objects.get(pk=drop.pk)
    assert (progress.sent, progress.failed, progress.remaining) == (10, 0, 0)
    assert progress.finished_at is not None
    assert GatewayMessage.objects.count() == 10


@pytest.mark.django_db
def test_failed_broadcast_messages_count_as_failed_and_a_resend_makes_one_remaining_again(make_lottery):
    fast_gateway(SMS_FAILURE_RATE=1, SMS_MAX_ATTEMPTS=1)
    drop = make_lottery(kind=Lottery.Kind.DROP)
    fans = players_with_phones(3, prefix="fan")
    with transaction.atomic():
        broadcast_create(lottery=drop, players=Player.objects.filter(pk__in=[p.pk for p in fans]), body="hi",
                         now=timezone.now())  # fmt: skip
    notification_batch_send(lottery_id=drop.pk, kind="broadcast")
    progress = Broadcast.objects.get(pk=drop.pk)
    assert (progress.sent, progress.failed, progress.remaining) == (0, 3, 0) and progress.finished_at is not None

    fast_gateway()
    notification_resend(notification_id=Notification.objects.filter(kind="broadcast").earliest("id").pk, actor=None)
    progress.refresh_from_db()
    assert (progress.failed, progress.remaining) == (2, 1)
    assert progress.finished_at is None
    notification_batch_send(lottery_id=drop.pk, kind="broadcast")
    progress.refresh_from_db()
    assert (progress.sent, progress.failed, progress.remaining) == (1, 2, 0) and progress.finished_at is not None
    assert GatewayMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@override_settings(SMS_SEND_LEASE_SECONDS=8)  # the sweep's lease, as the workers'
def test_a_broadcast_to_ten_thousand_players_reaches_each_once_even_when_a_worker_is_killed(make_lottery):
    # 500 messages a batch, 400 ms a batch, four chains: the worker is killed a few batches in.
    fast_gateway(SMS_BATCH_LATENCY_MIN_MS=400, SMS_BATCH_LATENCY_MAX_MS=400)
    drop = make_lottery(kind=Lottery.Kind.DROP)
    audience = players_with_phones(PLAYERS, prefix="fan")
    first = Worker(**LEASE)
    try:
        with transaction.atomic():
            broadcast_create(
                lottery=drop,
                players=Player.objects.filter(pk__in=[p.pk for p in audience]),
                body=drop_opening_body(drop),
                now=timezone.now(),
            )
        wait_for(lambda: Broadcast.objects.get(pk=drop.pk).sent >= 1500, 90, "the first batches")
        first.kill()
    finally:
        first_log = first.stop()
    stopped = Broadcast.objects.get(pk=drop.pk)
    assert 0 < stopped.remaining < PLAYERS, first_log

    fast_gateway()
    second = Worker(**LEASE)
    try:
        deadline = time.monotonic() + 120
        while Broadcast.objects.get(pk=drop.pk).finished_at is None:  # beat's sweep resumes the stopped broadcast
            assert time.monotonic() < deadline, "the broadcast did not resume"
            notifications_sweep()
            time.sleep(1)
    finally:
        second_log = second.stop()

    progress = Broadcast.objects.get(pk=drop.pk)
    assert (progress.total, progress.sent, progress.failed) == (PLAYERS, PLAYERS, 0), second_log
    assert Notification.objects.filter(kind="broadcast", state="sent").count() == PLAYERS
    assert GatewayMessage.objects.count() == PLAYERS  # one per player: none sent twice
