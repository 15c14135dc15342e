"""SMS consent for drop announcements: given and withdrawn through the API, by staff, and by an inbound STOP."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.errors import PermissionDenied
from entries.errors import InvalidPhoneNumber, PhoneNumberRequired
from entries.models import ConsentSource, SmsConsentEvent
from entries.selectors import players_opted_in_to_sms
from entries.services import player_ban, sms_consent_set, sms_opt_out
from tests.admin_pages import messages_of, run_action

pytestmark = pytest.mark.django_db


def _put(client, **body):
    return client.put(reverse("my-notifications"), body, format="json")


def test_a_player_opts_in_through_the_api_and_it_records_when_and_how(client_for, make_player):
    player = make_player(phone_number="+442079460123")
    client = client_for(player)
    before = client.get(reverse("my-notifications")).json()
    start = timezone.now()

    response = _put(client, drop_announcements=True)

    assert before["drop_announcements"] is False and before["opted_in_at"] is None
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["drop_announcements"] is True
    assert body["opt_in_source"] == "api"
    assert body["phone_number"] == "+44******123"
    player.refresh_from_db()
    assert start <= player.sms_opt_in_at <= timezone.now()
    assert player.sms_opt_in_source == ConsentSource.API
    assert client.get(reverse("my-notifications")).json() == body
    assert list(players_opted_in_to_sms()) == [player]
    event = SmsConsentEvent.objects.get(player=player)
    assert (event.action, event.source, event.phone_number, event.actor) == ("opt_in", "api", "+442079460123", None)


def test_opting_in_again_keeps_the_first_consent(client_for, make_player):
    player = make_player(phone_number="+442079460123")
    client = client_for(player)
    first = _put(client, drop_announcements=True).json()

    again = _put(client, drop_announcements=True).json()

    assert again["opted_in_at"] == first["opted_in_at"]
    assert SmsConsentEvent.objects.filter(player=player).count() == 1


def test_a_player_opts_out_through_the_api(client_for, make_player):
    player = make_player(phone_number="+442079460123")
    client = client_for(player)
    _put(client, drop_announcements=True)

    response = _put(client, drop_announcements=False)

    body = response.json()
    assert (body["drop_announcements"], body["opted_in_at"], body["opt_in_source"]) == (False, None, "")
    assert body["opt_out_source"] == "api"
    player.refresh_from_db()
    assert player.sms_opt_in_at is None
    assert timezone.now() - player.sms_opt_out_at < timedelta(minutes=1)
    assert list(players_opted_in_to_sms()) == []
    assert list(SmsConsentEvent.objects.filter(player=player).values_list("action", flat=True)) == [
        "opt_out",
        "opt_in",
    ]


def test_opting_in_needs_a_number_and_the_api_refuses_without_one(client_for, make_player):
    player = make_player(phone_number="")

    response = _put(client_for(player), drop_announcements=True)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "phone_number_required"
    player.refresh_from_db()
    assert player.sms_opt_in_at is None


def test_a_player_without_a_number_may_give_one_with_the_opt_in(client_for, make_player, settings):
    settings.PHONE_DEFAULT_REGION = "GB"
    player = make_player(phone_number="")

    response = _put(client_for(player), drop_announcements=True, phone_number="020 7946 0123")

    assert response.status_code == 200, response.content
    player.refresh_from_db()
    assert player.phone_number == "+442079460123"
    assert player.sms_opt_in_source == "api"


def test_a_number_on_file_is_changed_by_support_not_through_the_api(client_for, make_player):
    player = make_player(phone_number="+442079460123")
    client = client_for(player)

    changed = _put(client, drop_announcements=True, phone_number="+44 20 7946 0999")
    repeated = _put(client, drop_announcements=True, phone_number="+44 20 79 46 01 23")

    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "phone_number_on_file"
    assert repeated.status_code == 200  # the number on file, in another spelling
    player.refresh_from_db()
    assert player.phone_number == "+442079460123"


@pytest.mark.parametrize("body", [{}, {"drop_announcements": "yes"}, {"drop_announcements": None}])
def test_the_api_wants_a_boolean(client_for, make_player, body):
    response = client_for(make_player()).put(reverse("my-notifications"), body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_notification_settings_need_a_signed_in_player(api):
    assert api.get(reverse("my-notifications")).status_code == 401


def test_the_endpoint_is_in_the_openapi_document(client):
    document = json.loads(client.get(reverse("schema"), {"format": "json"}).content)
    operations = document["paths"]["/api/v1/me/notifications"]

    assert set(operations) >= {"get", "put"}
    assert {"400", "409"} <= set(operations["put"]["responses"])
    assert "`invalid_phone_number`" in operations["put"]["responses"]["400"]["description"]
    assert "`phone_number_required`" in operations["put"]["responses"]["409"]["description"]


# --- STOP -------------------------------------------------------------------------------------------


def test_an_inbound_stop_opts_out_every_player_on_that_number(make_player, settings):
    settings.PHONE_DEFAULT_REGION = "GB"
    household = [make_player(phone_number="+442079460123") for _ in range(2)]
    other = make_player(phone_number="+442079460999")
    for player in [*household, other]:
        sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.IMPORT, actor=None)

    stopped = sms_opt_out("020 7946 0123")

    assert stopped == 2
    for player in household:
        player.refresh_from_db()
        assert (player.sms_opted_in, player.sms_opt_out_source) == (False, "sms_stop")
        assert player.sms_consent_events.first().source == "sms_stop"
    assert list(players_opted_in_to_sms()) == [other]
    assert sms_opt_out("+442079460123") == 0  # a second STOP changes nothing


def test_a_stop_from_a_number_nobody_opted_in_with_changes_nothing(make_player):
    make_player(phone_number="+442079460123")

    assert sms_opt_out("+442079460555") == 0
    assert SmsConsentEvent.objects.count() == 0


def test_a_stop_from_an_unreadable_sender_is_refused(make_player):
    with pytest.raises(InvalidPhoneNumber):
        sms_opt_out("not a number")


def test_a_player_who_texted_stop_can_opt_in_again_through_the_api(client_for, make_player):
    player = make_player(phone_number="+442079460123")
    sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.ADMIN, actor=None)
    sms_opt_out("+442079460123")

    body = _put(client_for(player), drop_announcements=True).json()

    assert (body["drop_announcements"], body["opt_in_source"], body["opt_out_source"]) == (True, "api", "sms_stop")


# --- Staff --------------------------------------------------------------------------------------------


def test_support_records_an_opt_in_given_to_staff_with_how_it_was_given(client, make_player):
    agent = make_player(roles=["support"])
    client.force_login(agent)
    player = make_player(phone_number="+442079460123")

    response = run_action(
        client,
        "entries_player",
        "record_sms_opt-in_to_drop_announcements",
        [player],
        apply="1",
        reason="asked on the phone, call 4471",
    )

    assert "1 player(s) opted in to drop announcements by SMS." in messages_of(client.get(response["Location"]))
    player.refresh_from_db()
    assert player.sms_opt_in_source == "admin"
    event = player.sms_consent_events.get()
    assert (event.actor, event.note) == (agent, "asked on the phone, call 4471")


def test_the_admin_opt_in_of_a_player_without_a_number_says_why_it_was_refused(admin_client, make_player):
    player = make_player(phone_number="")

    response = run_action(
        admin_client, "entries_player", "record_sms_opt-in_to_drop_announcements", [player], apply="1", reason="r"
    )

    shown = messages_of(admin_client.get(response["Location"]))
    assert any("phone number on file" in message for message in shown), shown
    player.refresh_from_db()
    assert player.sms_opt_in_at is None


@pytest.mark.parametrize("role", ["operations", "compliance"])
def test_the_consent_service_refuses_staff_without_the_permission(role, make_player):
    player = make_player(phone_number="+442079460123")

    with pytest.raises(PermissionDenied):
        sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.ADMIN, actor=make_player(roles=[role]))

    player.refresh_from_db()
    assert player.sms_opt_in_at is None


def test_consent_sources_are_the_right_ones_for_each_direction(make_player):
    player = make_player(phone_number="+442079460123")

    with pytest.raises(ValueError, match="opt-in"):
        sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.SMS_STOP, actor=None)
    with pytest.raises(PhoneNumberRequired):
        sms_consent_set(player_id=make_player(phone_number="").pk, opted_in=True, source="import", actor=None)


def test_banned_players_are_not_texted_though_their_consent_stays(make_player):
    player = make_player(phone_number="+442079460123")
    sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.IMPORT, actor=None)

    player_ban(player_id=player.pk, reason="fraud", actor=None)

    assert list(players_opted_in_to_sms()) == []
    player.refresh_from_db()
    assert player.sms_opted_in
