"""Winner and "not selected" SMS: written with the draw, sent once, retried, failed, and the gateway's dedupe."""

import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from core.live import live
from core.models import LiveSetting
from entries.phones import mask_phone
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.services import lottery_today
from notifications.gateway import INJECTED_FAILURE, KeyAlreadySeen, OutgoingSms, SimulatedGateway
from notifications.models import GatewayMessage, Notification
from notifications.services import notification_batch_send, notification_send, notifications_sweep
from notifications.tasks import send_notification
from tests.sms import fast_gateway, set_live

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def gateway_at_once() -> None:
    fast_gateway()


@pytest.fixture
def drawn_daily(make_player, enter):
    """Yesterday's daily lottery with three entrants, drawn by the close service: one winner."""
    day = lottery_today() - timedelta(days=1)
    lottery = daily_lottery_open(day=day)
    players = [make_player() for _ in range(3)]
    for player in players:
        enter(lottery, player, now=lottery.closes_at - timedelta(hours=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.BEAT)
    return Lottery.objects.get(pk=lottery.pk)


def test_a_drawn_daily_lottery_writes_one_winner_sms_in_the_draw(drawn_daily):
    award = drawn_daily.awards.get()
    notification = Notification.objects.get()

    assert (notification.kind, notification.state, notification.attempts) == ("winner", "pending", 0)
    assert (notification.award_id, notification.player_id) == (award.pk, award.player_id)
    assert notification.recipient == award.player.phone_number
    assert f"You won Daily prize in {drawn_daily.title} (rank 1)" in notification.body
    # A daily lottery tells no one they were not selected; closing again writes nothing more.
    lottery_close(lottery_id=drawn_daily.pk, source=TransitionSource.BEAT)
    assert Notification.objects.count() == 1


def test_the_sms_is_written_in_the_draws_transaction_and_goes_with_it(make_player, enter):
    lottery = daily_lottery_open(day=lottery_today() - timedelta(days=1))
    enter(lottery, make_player(), now=lottery.closes_at - timedelta(hours=1))

    with pytest.raises(RuntimeError), transaction.atomic():
        lottery_close(lottery_id=lottery.pk, source=TransitionSource.BEAT)
        assert Notification.objects.count() == 1
        raise RuntimeError("the close's transaction fails after the draw")

    assert Notification.objects.count() == 0
    assert Lottery.objects.get(pk=lottery.pk).state == "open"


def test_the_send_task_run_twice_sends_one_sms(drawn_daily):
    notification = Notification.objects.get()

    assert send_notification.run(notification.pk) == "sent"
    assert send_notification.run(notification.pk) == "not sent"  # a redelivered task finds it done

    notification.refresh_from_db()
    message = GatewayMessage.objects.get()
    assert (notification.state, notification.attempts) == ("sent", 1)
    assert notification.gateway_message_id == message.gateway_message_id
    assert message.idempotency_key == f"notification-{notification.pk}"
    assert (message.recipient, message.body) == (notification.recipient, notification.body)
    assert notification.sent_at is not None and notification.latency_ms is not None


def test_a_winner_without_a_phone_number_gets_no_sms(make_player, enter):
    lottery = daily_lottery_open(day=lottery_today() - timedelta(days=1))
    enter(lottery, make_player(phone_number=""), now=lottery.closes_at - timedelta(hours=1))

    lottery_close(lottery_id=lottery.pk, source=TransitionSource.BEAT)

    assert Lottery.objects.get(pk=lottery.pk).awards.count() == 1
    assert not Notification.objects.exists()


def test_the_gateway_refuses_a_key_it_has_seen_with_the_first_messages_id():
    gateway = SimulatedGateway()
    first = gateway.send(OutgoingSms(to="+15550000001", body="hello", idempotency_key="k-1"))

    with pytest.raises(KeyAlreadySeen) as refused:
        gateway.send(OutgoingSms(to="+15550000001", body="hello again", idempotency_key="k-1"))

    assert refused.value.gateway_message_id == first.gateway_message_id
    assert GatewayMessage.objects.get().body == "hello"


def test_a_message_already_at_the_gateway_counts_as_sent_and_is_not_sent_again(drawn_daily):
    notification = Notification.objects.get()
    # A worker got the message to the gateway, then died before writing it down.
    first = SimulatedGateway().send(
        OutgoingSms(notification.recipient, notification.body, notification.idempotency_key)
    )
    Notification.objects.filter(pk=notification.pk).update(
        state="sending", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    outcome = notification_send(notification_id=notification.pk)

    notification.refresh_from_db()
    assert outcome.sent == 1
    assert (notification.state, notification.attempts) == ("sent", 2)
    assert notification.gateway_message_id == first.gateway_message_id
    assert GatewayMessage.objects.count() == 1


@override_settings(SMS_SEND_LEASE_SECONDS=30)
def test_a_message_another_worker_holds_is_left_to_it_until_its_lease_ends(drawn_daily):
    notification = Notification.objects.get()
    now = timezone.now()
    Notification.objects.filter(pk=notification.pk).update(
        state="sending", attempts=1, lease_expires_at=now + timedelta(seconds=30)
    )

    assert notification_send(notification_id=notification.pk, now=now).taken == 0
    assert notifications_sweep(now=now) == 0
    assert notifications_sweep(now=now + timedelta(seconds=31)) == 1  # the lease ran out: queued again
    assert notifications_sweep(now=now + timedelta(seconds=32)) == 0  # once a lease, not at every sweep
    assert notification_send(notification_id=notification.pk, now=now + timedelta(seconds=31)).sent == 1


@override_settings(SMS_RETRY_BACKOFF_MS=1000, SMS_RETRY_BACKOFF_MAX_MS=3000)
def test_failures_back_off_then_fail_after_the_last_attempt_and_log_each_injected_failure(drawn_daily, caplog):
    set_live(SMS_FAILURE_RATE=1, SMS_MAX_ATTEMPTS=4)
    notification = Notification.objects.get()
    now = timezone.now()
    caplog.set_level(logging.WARNING, logger="notifications.gateway")

    delays = []
    for _ in range(4):
        outcome = notification_send(notification_id=notification.pk, now=now)
        notification.refresh_from_db()
        assert notification_send(notification_id=notification.pk, now=now).taken == 0  # not before its backoff
        delays.append(outcome.retry_in)
        now = notification.next_attempt_at

    assert delays == [1.0, 2.0, 3.0, None]  # doubling, capped; none after the last attempt
    assert (notification.state, notification.attempts) == ("failed", 4)
    assert notification.last_error == "simulated delivery failure"
    assert not GatewayMessage.objects.exists()
    failures = [r for r in caplog.records if r.getMessage() == INJECTED_FAILURE]
    assert len(failures) == 4
    assert getattr(failures[0], "recipient") == mask_phone(notification.recipient)  # noqa: B009
    assert notification.recipient not in caplog.text


def test_a_drops_entrants_who_did_not_win_get_one_not_selected_sms_each_sent_in_batches(
    make_lottery, make_player, enter
):
    closes_at = timezone.now() - timedelta(minutes=1)
    drop = make_lottery(kind=Lottery.Kind.DROP, closes_at=closes_at, winners_count=2)
    players = [make_player() for _ in range(7)]
    for player in players:
        enter(drop, player, now=closes_at - timedelta(minutes=5))
    no_phone = make_player(phone_number="")
    enter(drop, no_phone, now=closes_at - timedelta(minutes=5))

    lottery_close(lottery_id=drop.pk, source=TransitionSource.BEAT)
    lottery_close(lottery_id=drop.pk, source=TransitionSource.BEAT)  # idempotent: nothing twice

    winners = set(drop.awards.values_list("player_id", flat=True))
    told = {p.pk for p in players} - winners  # the player without a phone number is told nothing
    not_selected = Notification.objects.filter(kind="not_selected")
    assert len(winners) == 2
    told_they_won = set(Notification.objects.filter(kind="winner").values_list("player_id", flat=True))
    assert told_they_won == winners - {no_phone.pk}
    assert set(not_selected.values_list("player_id", flat=True)) == told
    assert all("you were not selected" in body for body in not_selected.values_list("body", flat=True))

    with override_settings(SMS_BROADCAST_BATCH=2):
        batches = []
        while (outcome := notification_batch_send(lottery_id=drop.pk, kind="not_selected")).taken:
            batches.append(outcome.sent)
    assert batches == [2] * (len(told) // 2) + [1] * (len(told) % 2)
    assert set(not_selected.values_list("state", flat=True)) == {"sent"}
    assert GatewayMessage.objects.count() == len(told)  # the winners' own SMS are sent one by one, not in batches


def test_live_settings_take_the_admins_value_over_the_environments():
    LiveSetting.objects.filter(name="SMS_FAILURE_RATE").delete()
    from core import live as live_module

    live_module.forget()
    assert live("SMS_FAILURE_RATE") == 0.02  # the environment's default

    set_live(SMS_FAILURE_RATE="0.5")
    assert live("SMS_FAILURE_RATE") == 0.5


def test_metrics_count_messages_by_kind_and_outcome_and_show_the_backlog(client, drawn_daily):
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    sent_before = sample("lottery_sms_messages_total", kind="winner", outcome="sent")
    timed_before = sample("lottery_sms_send_latency_seconds_count", kind="winner")
    backlog = 'lottery_sms_backlog{kind="winner",state="pending"}'
    assert f"{backlog} 1.0" in client.get("/metrics").content.decode()

    send_notification.run(Notification.objects.get().pk)

    assert f"{backlog} 0.0" in client.get("/metrics").content.decode()
    assert sample("lottery_sms_messages_total", kind="winner", outcome="sent") == sent_before + 1
    assert sample("lottery_sms_send_latency_seconds_count", kind="winner") == timed_before + 1
