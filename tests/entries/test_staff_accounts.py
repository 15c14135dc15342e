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
        "sms_consent_events-TOTAL_FORMS": "0",
        "sms_consent_events-INITIAL_FORMS": "0",
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

    response = client.post(change_form(player), posted_form(player, phone_number="+12015550199", is_staff="on"))

    assert response.status_code == 302
    player.refresh_from_db()
    assert (player.phone_number, player.is_staff) == ("+12015550199", False)


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


@pytest.mark.parametrize("codename", ["change_group", "add_group", "delete_group"])
def test_only_a_superuser_edits_groups_so_staff_cannot_grant_themselves_permissions(client, make_player, codename):
    """A group's permissions are its members': editing one's own group would be editing one's own permissions."""
    staff = make_player(is_staff=True)
    own = Group.objects.create(name="group editors")
    own.permissions.set(Permission.objects.filter(codename__in=["view_group", codename]))
    staff.groups.add(own)
    client.force_login(staff)
    support = Group.objects.get(name="support")
    support_permissions = set(support.permissions.values_list("pk", flat=True))
    everything = [p.pk for p in Permission.objects.all()]

    edit_own = client.post(
        reverse("admin:auth_group_change", args=[own.pk]), {"name": own.name, "permissions": everything}
    )
    edit_role = client.post(
        reverse("admin:auth_group_change", args=[support.pk]), {"name": "support", "permissions": everything}
    )
    add = client.post(reverse("admin:auth_group_add"), {"name": "everything", "permissions": everything})
    delete = client.post(reverse("admin:auth_group_delete", args=[support.pk]), {"post": "yes"})

    assert (edit_own.status_code, edit_role.status_code, add.status_code, delete.status_code) == (403, 403, 403, 403)
    staff = Player.objects.get(pk=staff.pk)  # a fresh permission cache
    assert not staff.has_perm("entries.ban_player")
    assert set(own.permissions.values_list("codename", flat=True)) == {"view_group", codename}
    assert set(support.permissions.values_list("pk", flat=True)) == support_permissions
    assert not Group.objects.filter(name="everything").exists()


def test_compliance_sees_the_groups_read_only_and_a_superuser_edits_them(client, make_player):
    support = Group.objects.get(name="support")
    ban = Permission.objects.get(codename="ban_player")
    client.force_login(make_player(roles=["compliance"]))

    listed = client.get(reverse("admin:auth_group_changelist"))
    page = client.get(reverse("admin:auth_group_change", args=[support.pk])).content.decode()

    assert listed.status_code == 200 and "support" in listed.content.decode()
    assert 'name="permissions"' not in page  # shown, not editable

    client.force_login(Player.objects.create_superuser(username="root", password="root-password"))
    response = client.post(
        reverse("admin:auth_group_change", args=[support.pk]), {"name": "support", "permissions": [ban.pk]}
    )

    assert response.status_code == 302
    assert list(support.permissions.all()) == [ban]
