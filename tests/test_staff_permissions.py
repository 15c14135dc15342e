"""Every staff door checks its own permission: in admin, in the API, and in the service both call.

Each door is tried by each role (and by a staff member who can only look),
and a refusal must leave everything as it was. The roles are the groups the
migrations ship (entries.roles).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.errors import PermissionDenied
from core.models import LiveSetting
from entries.models import Ballot, Player, PlayerBanEvent
from entries.roles import ROLES
from entries.services import player_ban, player_unban
from lifecycle.services import drop_create, lottery_close
from loadgen.models import InjectedAnomaly
from loadgen.services import AnomalyReport, anomalies_record, drop_trigger, players_provision
from lotteries.models import Lottery
from notifications.models import Notification
from notifications.services import notification_resend
from outbox.inbox import dead_letters_replay
from outbox.models import DeadLetter, OutboxEvent
from outbox.services import replay_failed
from pools.door import stake_produce

pytestmark = pytest.mark.django_db

ROLE_NAMES = ["support", "operations", "compliance", "viewer"]  # viewer: is_staff with a few view permissions


@pytest.fixture
def staff_in(make_player) -> Callable[[str], Player]:
    def make(role: str):
        if role != "viewer":
            return make_player(roles=[role])
        viewer = make_player(is_staff=True)
        viewer.user_permissions.set(
            Permission.objects.filter(
                codename__in=["view_player", "view_lottery", "view_outboxevent", "view_notification"]
            )
        )
        return viewer

    return make


def test_the_shipped_groups_hold_exactly_the_roles_permissions():
    for role, names in ROLES.items():
        group = Group.objects.get(name=role)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert held == set(names), role


def test_compliance_sees_every_admin_page_but_may_change_nothing(client, staff_in):
    client.force_login(staff_in("compliance"))
    pages = ["entries_player", "entries_ballot", "lotteries_lottery", "draws_draw", "outbox_outboxevent"]
    for page in [*pages, "notifications_notification", "core_livesetting"]:
        html = client.get(reverse(f"admin:{page}_changelist")).content.decode()
        assert 'name="action"' not in html, page  # no action to run
    assert client.get(reverse("admin:pools_poolgame_add")).status_code == 403


# --- The doors, each with what it would change -----------------------------------------------


@dataclass
class Door:
    name: str
    allowed: set[str]  # roles that may use it
    setup: Callable[..., Any]
    use: Callable[..., Any]  # (client, subject) -> response
    state: Callable[[Any], Any]  # what a refusal must leave as it was
    needs_broker: bool = False  # a replayed dead letter that fails again is produced to the DLQ


def _player_with_ballot(make_player, make_lottery, enter):
    player = make_player()
    enter(make_lottery(), player)
    return player


def _banned_player(make_player, make_lottery, enter):
    player = make_player()
    player_ban(player_id=player.pk, reason="fraud", actor=None)
    return player


def _player_state(player: Player) -> Any:
    player.refresh_from_db()
    ballots = sorted(Ballot.objects.filter(player=player).values_list("status", flat=True))
    return player.is_banned, ballots, PlayerBanEvent.objects.filter(player=player).count()


def _consent_state(player: Player) -> Any:
    player.refresh_from_db()
    return player.sms_opt_in_at, player.sms_consent_events.count()


def _due_lottery(make_player, make_lottery, enter):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    return lottery


def _running_lottery(make_player, make_lottery, enter):
    lottery = make_lottery()
    enter(lottery, make_player())
    return lottery


def _lottery_state(lottery: Lottery) -> Any:
    lottery.refresh_from_db()
    return lottery.state, lottery.transitions.count(), hasattr(lottery, "draw")


def _parked_event(*_: Any) -> OutboxEvent:
    return OutboxEvent.objects.create(
        event_type="LotteryOpened",
        topic="lottery.v1.lifecycle",
        message_type="lotteryOpened",
        key=f"k-{uuid.uuid4()}",
        value="{}",
        state=OutboxEvent.State.FAILED,
        attempts=5,
        last_error="MessageSizeTooLarge",
        created_at=timezone.now(),
    )


def _event_state(event: OutboxEvent) -> Any:
    event.refresh_from_db()
    return event.state, event.attempts


def _dead_letter(*_: Any) -> DeadLetter:
    return DeadLetter.objects.create(
        consumer="stakes", topic="player.v1.staked", partition=0, offset=1, value=b"{", reason="bad_json", error="x"
    )


def _letter_state(letter: DeadLetter) -> Any:
    letter.refresh_from_db()
    return letter.status, DeadLetter.objects.count()


def _failed_sms(make_player, make_lottery, enter):
    lottery = _due_lottery(make_player, make_lottery, enter)
    lottery_close(lottery_id=lottery.pk, source="beat")
    notification = Notification.objects.get(lottery=lottery, kind="winner")
    Notification.objects.filter(pk=notification.pk).update(state="failed", attempts=5, last_error="gateway down")
    return notification


def _sms_state(notification: Notification) -> Any:
    notification.refresh_from_db()
    return notification.state, notification.attempts


def _admin_action(model: str, action: str, **extra: str) -> Callable[..., Any]:
    def use(client: Any, subject: Any) -> Any:
        data = {"action": action, ACTION_CHECKBOX_NAME: [subject.pk], "index": "0", **extra}
        return client.post(reverse(f"admin:{model}_changelist"), data)

    return use


def _api_close(*, force: bool) -> Callable[..., Any]:
    def use(client: Any, subject: Any) -> Any:
        return client.post(reverse("lottery-close", args=[subject.pk]), {"force": force}, format="json")

    return use


def _no_subject(*_: Any) -> None:
    return None


def _door_drops(_: Any) -> int:
    return Lottery.objects.filter(kind="drop", title="Door drop").count()


def _api_create_drop(client: Any, _: Any) -> Any:
    closes_at = timezone.now() + timedelta(hours=1)
    body = {"title": "Door drop", "prize": "Cap", "prize_quantity": 1, "closes_at": closes_at.isoformat()}
    return client.post(reverse("drop-create"), body, format="json")


def _admin_add_drop(client: Any, _: Any) -> Any:
    opens_at, closes_at = timezone.now(), timezone.now() + timedelta(hours=1)
    form = {"title": "Door drop", "prize": "Cap", "prize_quantity": "1", "winners_count": "", "alternates_count": "0",
            "opens_at_0": f"{opens_at:%Y-%m-%d}", "opens_at_1": f"{opens_at:%H:%M:%S}",
            "closes_at_0": f"{closes_at:%Y-%m-%d}", "closes_at_1": f"{closes_at:%H:%M:%S}"}  # fmt: skip
    return client.post(reverse("admin:lotteries_lottery_add"), form)


def _chaos_switch_rows(_: Any) -> list[Any]:
    return list(LiveSetting.objects.filter(name="CHEATER_PERCENTAGE").values_list("value", flat=True))


def _admin_set_chaos_switch(client: Any, _: Any) -> Any:
    return client.post(reverse("admin:core_livesetting_add"), {"name": "CHEATER_PERCENTAGE", "value": "0.2"})


def _triggered_drops(_: Any) -> int:
    return Lottery.objects.filter(title__startswith="Triggered drop").count()


def _api_trigger(client: Any, _: Any) -> Any:
    return client.post(reverse("loadgen-trigger"), {"entries": 3}, format="json")


def _loadgen_players(_: Any) -> int:
    return Player.objects.filter(username__startswith="loadgen-").count()


def _api_provision(client: Any, _: Any) -> Any:
    return client.post(reverse("loadgen-players"), {"count": 2}, format="json")


def _anomalies(_: Any) -> int:
    return InjectedAnomaly.objects.count()


def _api_record_anomaly(client: Any, _: Any) -> Any:
    body = {"run": "door", "anomalies": [{"kind": "fraudulent_entry"}]}
    return client.post(reverse("loadgen-anomalies"), body, format="json")


DOORS = [
    Door("admin ban", {"support"}, _player_with_ballot,
         _admin_action("entries_player", "ban_selected_players", apply="1", reason="r"), _player_state),
    Door("admin unban", {"support"}, _banned_player,
         _admin_action("entries_player", "unban_selected_players", apply="1", reason="r"), _player_state),
    Door("admin sms opt-in", {"support"}, _player_with_ballot,
         _admin_action("entries_player", "record_sms_opt-in_to_drop_announcements", apply="1", reason="r"),
         _consent_state),
    Door("admin close", {"operations"}, _due_lottery, _admin_action("lotteries_lottery", "close_due"), _lottery_state),
    Door("admin force close", {"operations"}, _running_lottery,
         _admin_action("lotteries_lottery", "close_forced"), _lottery_state),
    Door("admin replay event", {"operations"}, _parked_event,
         _admin_action("outbox_outboxevent", "replay"), _event_state),
    Door("admin replay dead letter", {"operations"}, _dead_letter,
         _admin_action("outbox_deadletter", "replay_dead_letters"), _letter_state, needs_broker=True),
    Door("admin resend sms", {"operations"}, _failed_sms,
         _admin_action("notifications_notification", "resend"), _sms_state),
    Door("api close", {"operations"}, _due_lottery, _api_close(force=False), _lottery_state),
    Door("api force close", {"operations"}, _running_lottery, _api_close(force=True), _lottery_state),
    Door("admin add drop", {"operations"}, _no_subject, _admin_add_drop, _door_drops),
    Door("api create drop", {"operations"}, _no_subject, _api_create_drop, _door_drops),
    Door("admin set chaos switch", {"operations"}, _no_subject, _admin_set_chaos_switch, _chaos_switch_rows),
    Door("api trigger a drop", {"operations"}, _no_subject, _api_trigger, _triggered_drops),
    Door("api provision players", {"operations"}, _no_subject, _api_provision, _loadgen_players),
    Door("api record an anomaly", {"operations"}, _no_subject, _api_record_anomaly, _anomalies),
]  # fmt: skip


def _client_for(door: Door, staff: Player) -> Any:
    if door.name.startswith("api"):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
        return api
    browser = Client()
    browser.force_login(staff)
    return browser


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize("door", DOORS, ids=lambda door: door.name)
def test_each_door_opens_for_its_role_only(door, role, staff_in, make_player, make_lottery, enter, request):
    if door.needs_broker:
        request.getfixturevalue("kafka_broker")
    staff = staff_in(role)
    subject = door.setup(make_player, make_lottery, enter)
    before = door.state(subject)
    client = _client_for(door, staff)

    response = door.use(client, subject)

    if role in door.allowed:
        assert response.status_code in (200, 201, 302), response.content
        assert door.state(subject) != before, f"{door.name} did nothing for {role}"
    else:
        if door.name.startswith("api"):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "permission_denied"
        assert door.state(subject) == before, f"{door.name} changed something for {role}"


@pytest.mark.parametrize(
    ("model", "actions"),
    [
        (
            "entries_player",
            [
                "ban_selected_players",
                "unban_selected_players",
                "record_sms_opt-in_to_drop_announcements",
                "record_sms_opt-out_of_drop_announcements",
            ],
        ),
        ("lotteries_lottery", ["close_due", "close_forced"]),
        ("outbox_outboxevent", ["replay"]),
        ("notifications_notification", ["resend"]),
    ],
)
def test_a_staff_member_who_can_only_look_is_not_offered_the_actions(client, staff_in, model, actions):
    client.force_login(staff_in("viewer"))

    html = client.get(reverse(f"admin:{model}_changelist")).content.decode()

    for action in actions:
        assert f'value="{action}"' not in html


def test_operations_may_close_but_only_the_force_permission_closes_early(client_for, make_player, make_lottery, enter):
    closer = make_player(is_staff=True)
    closer.user_permissions.set(Permission.objects.filter(codename="close_lottery"))
    lottery = _running_lottery(make_player, make_lottery, enter)
    before = _lottery_state(lottery)

    response = client_for(closer).post(reverse("lottery-close", args=[lottery.pk]), {"force": True}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"permission": "lotteries.force_close_lottery"}
    assert _lottery_state(lottery) == before


def test_the_stakes_door_needs_produce_stake(client_for, staff_in):
    body = {"playerId": "p", "gameId": "g", "amount": "1.00", "currency": "EUR"}
    for role in ["support", "compliance", "viewer"]:
        response = client_for(staff_in(role)).post(reverse("stake-produce"), body, format="json")
        assert response.status_code == 403, role


# --- The services refuse on their own, whoever calls them --------------------------------------


@pytest.mark.parametrize("role", ["support", "compliance", "viewer"])
def test_services_refuse_a_staff_actor_without_the_permission(role, staff_in, make_player, make_lottery, enter):
    staff = staff_in(role)
    lottery = _due_lottery(make_player, make_lottery, enter)
    event, letter = _parked_event(), _dead_letter()
    sms = _failed_sms(make_player, make_lottery, enter)
    before = (_lottery_state(lottery), _event_state(event), _letter_state(letter), _sms_state(sms))
    hour_on = timezone.now() + timedelta(hours=1)

    calls: list[Callable[[], Any]] = [
        lambda: lottery_close(lottery_id=lottery.pk, source="admin", actor=staff),
        lambda: replay_failed(event_ids=[event.pk], actor=staff),
        lambda: dead_letters_replay(ids=[letter.pk], actor=staff),
        lambda: stake_produce(message={"playerId": "p"}, actor=staff),
        lambda: notification_resend(notification_id=sms.pk, actor=staff),
        lambda: anomalies_record(run="r", reports=[AnomalyReport(kind="fraudulent_entry")], actor=staff),
        lambda: players_provision(count=1, actor=staff),
        lambda: drop_trigger(actor=staff, entries=1),
        lambda: drop_create(
            title="D",
            prize="P",
            prize_quantity=1,
            opens_at=lottery.opens_at,
            closes_at=hour_on,
            source="admin",
            actor=staff,
        ),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()

    assert (_lottery_state(lottery), _event_state(event), _letter_state(letter), _sms_state(sms)) == before
    assert (_anomalies(None), _loadgen_players(None), _triggered_drops(None)) == (0, 0, 0)


@pytest.mark.parametrize("role", ["operations", "compliance", "viewer"])
def test_ban_and_unban_services_refuse_a_staff_actor_without_the_permission(role, staff_in, make_player):
    staff = staff_in(role)
    player, banned = make_player(), make_player()
    player_ban(player_id=banned.pk, reason="fraud", actor=None)

    with pytest.raises(PermissionDenied):
        player_ban(player_id=player.pk, reason="r", actor=staff)
    with pytest.raises(PermissionDenied):
        player_unban(player_id=banned.pk, reason="r", actor=staff)

    player.refresh_from_db()
    banned.refresh_from_db()
    assert (player.is_banned, banned.is_banned) == (False, True)


@pytest.mark.parametrize("role", ["support", "compliance", "viewer"])
def test_a_staff_member_refused_at_an_api_door_is_told_the_permission(
    role, client_for, staff_in, make_player, make_lottery, enter
):
    lottery = _due_lottery(make_player, make_lottery, enter)
    before = _lottery_state(lottery)
    client = client_for(staff_in(role))
    stake = {"stakeId": "s-1", "playerId": "p", "gameId": "g", "amount": "1.00", "currency": "EUR",
             "occurredAt": "2026-01-01T00:00:00Z"}  # fmt: skip

    close = client.post(reverse("lottery-close", args=[lottery.pk]), {}, format="json")
    stakes = client.post(reverse("stake-produce"), stake, format="json")

    assert (close.status_code, stakes.status_code) == (403, 403)
    assert close.json()["error"] | {"message": ""} == {
        "code": "permission_denied", "message": "", "details": {"permission": "lotteries.close_lottery"}
    }  # fmt: skip
    assert stakes.json()["error"]["details"] == {"permission": "pools.produce_stake"}
    anonymous = APIClient().post(reverse("lottery-close", args=[lottery.pk]), {}, format="json")
    assert (anonymous.status_code, anonymous.json()["error"]["details"]) == (403, {})  # nobody else is told more
    assert _lottery_state(lottery) == before


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_ground_truth_and_the_switches_are_read_by_operations_and_compliance_only(role, client_for, staff_in):
    client = client_for(staff_in(role))

    truth = client.get(reverse("loadgen-anomalies"))
    switches = client.get(reverse("loadgen-chaos"))

    expected = 200 if role in ("operations", "compliance") else 403
    assert (truth.status_code, switches.status_code) == (expected, expected)
    if expected == 403:
        assert truth.json()["error"]["details"] == {"permission": "loadgen.view_injectedanomaly"}


def test_live_settings_without_the_chaos_permission_leave_the_chaos_switches_alone(client, make_player):
    # given a staff member who may set live settings, but not chaos switches
    staff = make_player(is_staff=True)
    names = ["view_livesetting", "add_livesetting", "change_livesetting", "delete_livesetting"]
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="core", codename__in=names))
    client.force_login(staff)
    LiveSetting.objects.create(name="CHEATER_PERCENTAGE", value="0.1")
    add = reverse("admin:core_livesetting_add")

    form = client.get(add).content.decode()
    chaos = client.post(add, {"name": "ANOMALY_TRAFFIC_BURST_ENABLED", "value": "false"})
    plain = client.post(add, {"name": "SMS_LATENCY_MIN_MS", "value": "10"})
    changed = client.post(reverse("admin:core_livesetting_change", args=["CHEATER_PERCENTAGE"]), {"value": "0.9"})
    deleted = client.post(reverse("admin:core_livesetting_delete", args=["CHEATER_PERCENTAGE"]), {"post": "yes"})

    assert "SMS_LATENCY_MIN_MS" in form and "ANOMALY_TRAFFIC_BURST_ENABLED" not in form
    assert (chaos.status_code, plain.status_code) == (200, 302)  # the chaos switch's form is refused
    assert changed.status_code == 403 and deleted.status_code == 403
    assert dict(LiveSetting.objects.values_list("name", "value")) == {
        "CHEATER_PERCENTAGE": "0.1", "SMS_LATENCY_MIN_MS": "10"
    }  # fmt: skip
