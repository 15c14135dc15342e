"""Player admin: the ban and unban actions, and the ban fields that stay read-only in the change form."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from entries.models import Ballot, PlayerBanEvent
from entries.services import player_ban
from lifecycle.services import lottery_close
from lotteries.models import TransitionSource
from tests.admin_pages import messages_of, run_action

# --- Ban and unban -----------------------------------------------------------------


@pytest.mark.django_db
def test_ban_action_without_a_reason_shows_the_reason_form_and_changes_nothing(
    admin_client, make_player, make_lottery, enter
):
    # given a player with a ballot in an open lottery
    player = make_player()
    ballot = enter(make_lottery(), player)

    # when staff pick the ban action without giving a reason
    response = run_action(admin_client, "entries_player", "ban_selected_players", [player], index="0")

    # then the reason form is shown, and nothing changed
    assert response.status_code == 200
    assert response.templates[0].name == "admin/reason_action.html"
    html = response.content.decode()
    assert 'name="reason"' in html
    assert 'value="ban_selected_players"' in html
    player.refresh_from_db()
    assert player.is_banned is False
    assert PlayerBanEvent.objects.count() == 0
    ballot.refresh_from_db()
    assert ballot.status == Ballot.Status.VALID


@pytest.mark.django_db
def test_ban_action_with_a_blank_reason_shows_the_form_again_and_changes_nothing(admin_client, make_player):
    player = make_player()

    response = run_action(admin_client, "entries_player", "ban_selected_players", [player], apply="1", reason="   ")

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    player.refresh_from_db()
    assert player.is_banned is False
    assert PlayerBanEvent.objects.count() == 0


@pytest.mark.django_db
def test_ban_action_with_a_reason_bans_records_the_actor_and_voids_undrawn_ballots(
    admin_client, staff, make_player, make_lottery, enter
):
    # given a player with a ballot in an open lottery and a ballot in a drawn lottery
    player = make_player()
    open_lottery = make_lottery()
    open_ballot = enter(open_lottery, player)
    closes_at = timezone.now() - timedelta(minutes=5)
    drawn_lottery = make_lottery(closes_at=closes_at)
    drawn_ballot = enter(drawn_lottery, player, now=closes_at - timedelta(minutes=1))
    lottery_close(lottery_id=drawn_lottery.pk, source=TransitionSource.SYSTEM)
    bystander = make_player()
    bystander_ballot = enter(open_lottery, bystander)

    # when staff confirm the ban with a reason
    response = run_action(
        admin_client, "entries_player", "ban_selected_players", [player], apply="1", reason="  shared cards  "
    )

    # then the player is banned, the ban is audited with the actor, and only the undrawn ballot is void
    assert response.status_code == 302
    player.refresh_from_db()
    assert player.is_banned is True
    assert player.banned_at is not None
    assert player.ban_reason == "shared cards"
    assert player.banned_by == staff
    event = PlayerBanEvent.objects.get()
    assert (event.player, event.action, event.reason, event.actor, event.voided_ballots) == (
        player,
        PlayerBanEvent.Action.BAN,
        "shared cards",
        staff,
        1,
    )
    open_ballot.refresh_from_db()
    drawn_ballot.refresh_from_db()
    bystander_ballot.refresh_from_db()
    assert open_ballot.status == Ballot.Status.VOID
    assert open_ballot.voided_at is not None
    assert drawn_ballot.status == Ballot.Status.VALID
    assert bystander_ballot.status == Ballot.Status.VALID
    followed = admin_client.get(response["Location"])
    assert "1 player(s) banned; their ballots in lotteries not yet drawn are void." in messages_of(followed)


@pytest.mark.django_db
def test_ban_action_on_an_already_banned_player_changes_nothing(admin_client, staff, make_player):
    # given a banned player
    player = make_player()
    player_ban(player_id=player.pk, reason="first", actor=staff)

    # when staff ban them again
    response = run_action(admin_client, "entries_player", "ban_selected_players", [player], apply="1", reason="again")

    # then the first ban stands and no second event is recorded
    assert response.status_code == 302
    player.refresh_from_db()
    assert player.ban_reason == "first"
    assert PlayerBanEvent.objects.filter(player=player).count() == 1
    assert "0 player(s) banned; their ballots in lotteries not yet drawn are void." in messages_of(
        admin_client.get(response["Location"])
    )


@pytest.mark.django_db
def test_unban_action_lifts_the_ban_and_keeps_voided_ballots_void(
    admin_client, staff, make_player, make_lottery, enter
):
    # given a player banned while holding a ballot in an open lottery
    player = make_player()
    lottery = make_lottery()
    ballot = enter(lottery, player)
    player_ban(player_id=player.pk, reason="suspicious", actor=staff)

    # when staff unban them with a reason
    response = run_action(
        admin_client, "entries_player", "unban_selected_players", [player], apply="1", reason="cleared"
    )

    # then
    assert response.status_code == 302
    player.refresh_from_db()
    assert player.is_banned is False
    assert player.banned_at is None
    assert player.ban_reason == ""
    assert player.banned_by is None
    events = list(PlayerBanEvent.objects.filter(player=player).order_by("id").values_list("action", "reason", "actor"))
    assert events == [("ban", "suspicious", staff.pk), ("unban", "cleared", staff.pk)]
    ballot.refresh_from_db()
    assert ballot.status == Ballot.Status.VOID
    assert "1 player(s) unbanned." in messages_of(admin_client.get(response["Location"]))


@pytest.mark.django_db
def test_unban_action_without_a_reason_shows_the_form_and_keeps_the_ban(admin_client, staff, make_player):
    player = make_player()
    player_ban(player_id=player.pk, reason="suspicious", actor=staff)

    response = run_action(admin_client, "entries_player", "unban_selected_players", [player], index="0")

    assert response.status_code == 200
    assert 'name="reason"' in response.content.decode()
    player.refresh_from_db()
    assert player.is_banned is True
    assert PlayerBanEvent.objects.filter(player=player).count() == 1


# --- The change form ---------------------------------------------------------------


@pytest.mark.django_db
def test_player_change_form_shows_ban_fields_read_only(admin_client, make_player):
    player = make_player()

    response = admin_client.get(reverse("admin:entries_player_change", args=[player.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Ban (changed only by the ban and unban actions)" in html
    for field in ("is_banned", "banned_at", "ban_reason", "banned_by"):
        assert f'name="{field}"' not in html
        assert f"field-{field}" in html
    assert 'name="phone_number"' in html


@pytest.mark.django_db
def test_posting_ban_fields_in_the_change_form_does_not_ban(admin_client, make_player, make_lottery, enter):
    # given a player with a ballot in an open lottery
    player = make_player()
    ballot = enter(make_lottery(), player)

    # when staff save the change form with ban fields set, and a real change to the phone number
    response = admin_client.post(
        reverse("admin:entries_player_change", args=[player.pk]),
        {
            "username": player.username,
            "first_name": "",
            "last_name": "",
            "email": "",
            "is_active": "on",
            "phone_number": "+1 201 555 0199",
            "external_account_id": player.external_account_id,
            "is_banned": "on",
            "banned_at_0": "2024-01-01",
            "banned_at_1": "00:00:00",
            "ban_reason": "typed into the form",
            "ban_events-TOTAL_FORMS": "0",
            "ban_events-INITIAL_FORMS": "0",
            "ban_events-MIN_NUM_FORMS": "0",
            "ban_events-MAX_NUM_FORMS": "1000",
            "sms_consent_events-TOTAL_FORMS": "0",
            "sms_consent_events-INITIAL_FORMS": "0",
        },
    )

    # then the form saved, but the ban fields were ignored
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    player.refresh_from_db()
    assert player.phone_number == "+12015550199"  # stored as E.164
    assert player.is_banned is False
    assert player.banned_at is None
    assert player.ban_reason == ""
    assert PlayerBanEvent.objects.count() == 0
    ballot.refresh_from_db()
    assert ballot.status == Ballot.Status.VALID
