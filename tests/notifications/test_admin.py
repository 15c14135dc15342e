"""The delivery log and the live settings in admin, as operations staff see them."""

from datetime import timedelta

import pytest
from django.urls import reverse

from core.live import live
from core.models import LiveSetting
from entries.phones import mask_phone
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import TransitionSource
from lotteries.services import lottery_today
from notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, make_player):
    client.force_login(make_player(roles=["operations"]))
    return client


def test_the_delivery_log_lists_each_sms_with_its_number_masked(operator, make_player, enter):
    lottery = daily_lottery_open(day=lottery_today() - timedelta(days=1))
    winner = make_player(phone_number="+15557654321")
    enter(lottery, winner, now=lottery.closes_at - timedelta(hours=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.BEAT)
    notification = Notification.objects.get()

    page = operator.get(reverse("admin:notifications_notification_changelist")).content.decode()
    failed = operator.get(reverse("admin:notifications_notification_changelist"), {"state__exact": "failed"})
    detail = operator.get(reverse("admin:notifications_notification_change", args=[notification.pk]))

    assert mask_phone("+15557654321") in page
    assert "+15557654321" not in page
    assert 'value="resend"' in page
    assert f"/notifications/notification/{notification.pk}/" not in failed.content.decode()  # the state filter
    assert detail.status_code == 200
    assert notification.body in detail.content.decode()


def test_operations_set_a_live_setting_in_admin_and_a_bad_value_is_refused(operator):
    add = reverse("admin:core_livesetting_add")

    refused = operator.post(add, {"name": "SMS_FAILURE_RATE", "value": "1.5"})
    unknown = operator.post(add, {"name": "DJANGO_SECRET_KEY", "value": "x"})
    accepted = operator.post(add, {"name": "SMS_FAILURE_RATE", "value": "0.25"})

    assert refused.status_code == 200 and "is not in [0, 1]" in refused.content.decode()
    assert unknown.status_code == 200  # only the registered settings are offered
    assert accepted.status_code == 302
    assert list(LiveSetting.objects.values_list("name", "value")) == [("SMS_FAILURE_RATE", "0.25")]
    assert live("SMS_FAILURE_RATE") == 0.25

    change = reverse("admin:core_livesetting_change", args=["SMS_FAILURE_RATE"])
    assert operator.post(change, {"value": "2"}).status_code == 200  # refused again
    assert operator.post(change, {"value": "0.75"}).status_code == 302
    assert live("SMS_FAILURE_RATE") == 0.75


def test_support_sees_the_delivery_log_but_not_the_live_settings(client, make_player):
    client.force_login(make_player(roles=["support"]))

    assert client.get(reverse("admin:notifications_notification_changelist")).status_code == 200
    assert client.get(reverse("admin:core_livesetting_changelist")).status_code == 403
