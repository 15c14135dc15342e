"""Draw and award admin: view-only records, the verify action, and the seed that stays out of admin."""

import pytest
from django.contrib import admin
from django.urls import reverse

from draws.models import Draw, LotteryAward, LotterySeed
from tests.admin_pages import messages_of, run_action

# --- Draws: read-only --------------------------------------------------------------


@pytest.mark.django_db
def test_draw_change_page_is_view_only(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)
    url = reverse("admin:draws_draw_change", args=[draw.pk])

    page = admin_client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert 'name="seed"' not in html
    assert draw.seed in html
    assert page.context["has_change_permission"] is False
    assert page.context["has_delete_permission"] is False


@pytest.mark.django_db
def test_posting_to_the_draw_change_page_is_refused_and_changes_nothing(admin_client, drawn_lottery):
    # given a drawn lottery's draw
    draw = Draw.objects.get(lottery=drawn_lottery)
    before = (draw.seed, draw.entries_digest, list(draw.winning_ballot_ids))

    # when someone posts a change to it
    response = admin_client.post(
        reverse("admin:draws_draw_change", args=[draw.pk]),
        {"seed": "00" * 32, "winning_ballot_ids": "1", "_save": "Save"},
    )

    # then it is forbidden and the record is the same
    assert response.status_code == 403
    draw.refresh_from_db()
    assert (draw.seed, draw.entries_digest, list(draw.winning_ballot_ids)) == before


@pytest.mark.django_db
def test_draws_and_awards_cannot_be_added_or_deleted_in_admin(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)
    award = LotteryAward.objects.get(lottery=drawn_lottery)

    responses = [
        admin_client.get(reverse("admin:draws_draw_add")),
        admin_client.get(reverse("admin:draws_lotteryaward_add")),
        admin_client.post(reverse("admin:draws_draw_delete", args=[draw.pk]), {"post": "yes"}),
        admin_client.post(reverse("admin:draws_lotteryaward_delete", args=[award.pk]), {"post": "yes"}),
    ]

    assert [response.status_code for response in responses] == [403, 403, 403, 403]
    assert Draw.objects.filter(pk=draw.pk).exists()
    assert LotteryAward.objects.filter(pk=award.pk).exists()


@pytest.mark.django_db
def test_verify_action_reports_that_the_draw_verifies(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)

    response = run_action(admin_client, "draws_draw", "verify", [draw], index="0")

    assert response.status_code == 302
    assert f"{draw}: verified, the recomputed result matches." in messages_of(admin_client.get(response["Location"]))


# --- The seed stays secret ---------------------------------------------------------


def test_lottery_seed_is_not_registered_in_admin():
    assert not admin.site.is_registered(LotterySeed)
    assert all(model is not LotterySeed for model in admin.site._registry)


@pytest.mark.django_db
def test_no_admin_url_serves_lottery_seeds(admin_client, make_lottery):
    lottery = make_lottery()

    response = admin_client.get(f"/admin/draws/lotteryseed/{lottery.pk}/change/")

    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert "lotteryseed" not in response["Location"]
