"""A player's answer by SMS: STOP, however written, opts them out; anything else changes nothing."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from entries.models import ConsentSource, Player
from entries.services import sms_consent_set
from notifications.gateway import SimulatedGateway


@pytest.fixture
def opted_in(make_player) -> Player:
    player: Player = make_player(phone_number="+442079460123")
    sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.API, actor=None)
    return player


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["STOP", "stop", " Stop all ", "UNSUBSCRIBE"])
def test_a_stop_through_the_simulated_gateway_opts_the_player_out(opted_in, body):
    assert SimulatedGateway().deliver_inbound(from_number="+442079460123", body=body) is True

    opted_in.refresh_from_db()
    assert opted_in.sms_opt_in_at is None
    assert (opted_in.sms_opt_out_source, opted_in.sms_opt_out_at is not None) == (ConsentSource.SMS_STOP, True)


@pytest.mark.django_db
def test_any_other_answer_changes_nothing(opted_in):
    assert SimulatedGateway().deliver_inbound(from_number="+442079460123", body="stop sending me prizes?") is False

    opted_in.refresh_from_db()
    assert opted_in.sms_opt_in_at is not None


@pytest.mark.django_db
def test_the_command_delivers_a_stop_and_refuses_an_unreadable_sender(opted_in, capsys, settings):
    settings.PHONE_DEFAULT_REGION = ""
    call_command("sms_inbound", "+44 20 7946 0123", "STOP")
    assert "opted out" in capsys.readouterr().out
    opted_in.refresh_from_db()
    assert opted_in.sms_opt_in_at is None

    with pytest.raises(CommandError, match="invalid_phone_number"):
        call_command("sms_inbound", "020 7946 0123", "STOP")  # no country code, no default region
