"""The admin site as a whole: every app's changelist loads for staff, links across apps, and needs a login.

These tests are here, not beside one app, because each one walks the pages of several apps
(entries, lotteries, draws, beat's periodic tasks) or the admin login that guards them all.
"""

import pytest
from django.urls import reverse

from draws.models import Draw, LotteryAward
from tests.admin_pages import changelist

# --- Pages -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [
        "entries_player",
        "entries_ballot",
        "lotteries_lottery",
        "draws_draw",
        "draws_lotteryaward",
        "django_celery_beat_periodictask",
        "notifications_notification",
        "notifications_gatewaymessage",
        "notifications_broadcast",
        "core_livesetting",
        "loadgen_injectedanomaly",
    ],
)
def test_changelists_load_for_staff(admin_client, drawn_lottery, model):
    response = admin_client.get(changelist(model))

    assert response.status_code == 200


@pytest.mark.django_db
def test_changelists_show_the_data(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)
    award = LotteryAward.objects.get(lottery=drawn_lottery)

    lotteries = admin_client.get(changelist("lotteries_lottery")).content.decode()
    draws = admin_client.get(changelist("draws_draw")).content.decode()
    awards = admin_client.get(changelist("draws_lotteryaward")).content.decode()
    ballots = admin_client.get(changelist("entries_ballot")).content.decode()

    assert drawn_lottery.title in lotteries
    assert reverse("admin:draws_draw_change", args=[draw.pk]) in lotteries
    assert reverse("admin:draws_draw_change", args=[draw.pk]) in draws
    assert reverse("admin:draws_lotteryaward_change", args=[award.pk]) in awards
    assert reverse("admin:entries_ballot_change", args=[award.ballot_id]) in ballots


@pytest.mark.django_db
def test_changelists_refuse_an_anonymous_visitor(client):
    response = client.get(changelist("lotteries_lottery"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
