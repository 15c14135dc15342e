"""Staff accounts in admin: only a superuser makes staff, touches another staff member's account, or sees API tokens."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from rest_framework.authtoken.models import Token

from entries.models import Player

pytestmark = pytest.mark.django_db


@pytest.fixture
def account_manager(make_player):
    """A staff member who may change players (and every other permission of the support role)."""
    manager = make_player(roles=["support"])
    manager.user_permissions.add(Permission.objects.get(codename="change_player"))
    return manager


def change_form(player: Player) -> str:
    return reverse("admin:entries_player_change", args=[player.pk])


def posted_form(player: Player, **changes):
    """The change form as a browser would post it, with ``changes`` on top."""
    data = {
        "username": player.username,
        "phone_number": player.phone_number,
        "external_account_id": player.external_account_id,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "ban_events-TOTAL_FORMS": "0",
        "ban_events-INITIAL_FORMS": "0",
        **changes,
    }
    return {key: value for key, value in data.items() if value is not None}


def test_a_staff_member_cannot_make_themselves_superuser(client, account_manager):
    client.force_login(account_manager)
    operations = Group.objects.get(name="operations")

    page = client.get(change_form(account_manager)).content.decode()
    response = client.post(
        change_form(account_manager),
        posted_form(account_manager, is_superuser="on", is_staff="on", groups=[operations.pk],
                    user_permissions=[p.pk for p in Permission.objects.all()]),
    )  # fmt: skip

    assert response.status_code == 302  # the form saved what it may save
    for field in ("is_superuser", "is_staff", "groups", "user_permissions"):
        assert f'name="{field}"' not in page
    account_manager.refresh_from_db()
    assert account_manager.is_superuser is False
    assert list(account_manager.groups.values_list("name", flat=True)) == ["support"]
    assert account_manager.user_permissions.count() == 1


def test_a_staff_member_edits_a_players_details_but_cannot_make_them_staff(client, account_manager, make_player):
    client.force_login(account_manager)
    player = make_player()

    response = client.post(change_form(player), posted_form(player, phone_number="+15550009999", is_staff="on"))

    assert response.status_code == 302
    player.refresh_from_db()
    assert (player.phone_number, player.is_staff) == ("+15550009999", False)


def test_another_staff_members_account_and_password_are_a_superusers_to_change(client, account_manager, make_player):
    colleague = make_player(roles=["operations"])
    password = colleague.password
    client.force_login(account_manager)
    password_url = reverse("admin:auth_user_password_change", args=[colleague.pk])

    form = client.post(change_form(colleague), posted_form(colleague, username="renamed"))
    new_password = client.post(password_url, {"password1": "Another-pass-123", "password2": "Another-pass-123",
                                              "usable_password": "true"})  # fmt: skip

    own_password = client.get(reverse("admin:auth_user_password_change", args=[account_manager.pk]))

    assert (form.status_code, new_password.status_code) == (403, 403)
    assert own_password.status_code == 200  # their own password is theirs to change
    colleague.refresh_from_db()
    assert colleague.password == password
    assert colleague.username != "renamed"


def test_a_superuser_grants_a_role(client, make_player):
    root = Player.objects.create_superuser(username="root", password="root-password")
    newcomer = make_player()
    support = Group.objects.get(name="support")
    client.force_login(root)

    response = client.post(change_form(newcomer), posted_form(newcomer, is_staff="on", groups=[support.pk]))

    assert response.status_code == 302
    newcomer.refresh_from_db()
    assert newcomer.is_staff and list(newcomer.groups.values_list("name", flat=True)) == ["support"]


@pytest.mark.parametrize("role", ["support", "operations", "compliance"])
def test_api_tokens_are_hidden_from_staff_who_are_not_superusers(client, make_player, role):
    staff = make_player(roles=[role])
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="authtoken"))
    token = Token.objects.create(user=make_player())
    client.force_login(staff)

    index = client.get(reverse("admin:index")).content.decode()
    tokens = client.get(reverse("admin:authtoken_tokenproxy_changelist"))
    player_page = client.get(change_form(token.user)).content.decode()

    assert tokens.status_code == 403
    assert token.key not in index and token.key not in player_page
    assert "authtoken" not in index


def test_a_superuser_sees_the_tokens(client, make_player):
    root = Player.objects.create_superuser(username="root", password="root-password")
    token = Token.objects.create(user=make_player())
    client.force_login(root)

    tokens = client.get(reverse("admin:authtoken_tokenproxy_changelist"))

    assert tokens.status_code == 200
    assert token.key in tokens.content.decode()
