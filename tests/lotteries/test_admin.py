"""Lottery admin display: the change form is read-only, and no lottery page shows the seed."""

import pytest
from django.urls import reverse

from draws.models import LotterySeed
from tests.admin_pages import changelist


@pytest.mark.django_db
def test_lottery_change_form_is_read_only(admin_client, make_lottery):
    lottery = make_lottery()

    response = admin_client.get(reverse("admin:lotteries_lottery_change", args=[lottery.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="state"' not in html
    assert 'name="closes_at' not in html


@pytest.mark.django_db
def test_lottery_admin_pages_never_show_the_seed_of_an_open_lottery(admin_client, make_lottery, make_player, enter):
    # given an open lottery with a ballot, and its secret seed
    lottery = make_lottery()
    enter(lottery, make_player())
    seed = bytes(LotterySeed.objects.get(lottery=lottery).seed).hex()

    # when staff open its change page and the lottery list
    change = admin_client.get(reverse("admin:lotteries_lottery_change", args=[lottery.pk]))
    listing = admin_client.get(changelist("lotteries_lottery"))

    # then the commitment is shown, never the seed
    assert change.status_code == listing.status_code == 200
    assert lottery.seed_commitment in change.content.decode()
    for response in (change, listing):
        assert seed not in response.content.decode().lower()
