"""Django admin: the pages staff use, the ban/unban actions, the close actions, and what stays read-only."""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from draws.models import Draw, LotteryAward, LotterySeed
from entries.models import Ballot, Player, PlayerBanEvent
from entries.services import player_ban
from lotteries.models import Lottery, LotteryTransition, TransitionSource
from lotteries.services import lottery_close


@pytest.fixture
def staff(db) -> Player:
    return Player.objects.create_superuser(username="boss", email="boss@example.com", password="boss-password")


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def drawn_lottery(make_lottery, make_player, enter):
    """A lottery drawn by the service, with one ballot."""
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM)
    return Lottery.objects.get(pk=lottery.pk)


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def run_action(client, model: str, action: str, objects, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **extra}
    return client.post(changelist(model), data)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


# --- Pages -----------------------------------------------------------------------


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


@pytest.mark.django_db
def test_periodic_tasks_are_not_in_the_database_until_beat_syncs_them(admin_client):
    # given beat has never run against this database
    # when staff open the periodic tasks page
    response = admin_client.get(changelist("django_celery_beat_periodictask"))

    # then the page loads, empty: beat's DatabaseScheduler writes CELERY_BEAT_SCHEDULE when it starts
    assert response.status_code == 200
    assert not PeriodicTask.objects.filter(name__in=["open-daily-lottery", "close-due-lotteries"]).exists()


@pytest.mark.django_db(transaction=True)  # the scheduler calls close_old_connections(), which ends a test transaction
def test_beat_schedule_appears_in_periodic_tasks_once_synced(client, staff):
    # given beat's database scheduler has synced CELERY_BEAT_SCHEDULE, as beat does when it starts
    from lottery_site.celery import app

    scheduler = DatabaseScheduler(app=app)
    try:
        # when staff open the periodic tasks page
        client.force_login(staff)
        response = client.get(changelist("django_celery_beat_periodictask"))
    finally:
        scheduler._finalize()  # sync and unregister now, not when garbage collected during a later test

    # then both schedules are there, once each
    assert response.status_code == 200
    synced = PeriodicTask.objects.filter(name__in=["open-daily-lottery", "close-due-lotteries"])
    assert sorted(synced.values_list("name", "task", "enabled")) == [
        ("close-due-lotteries", "lotteries.tasks.close_due_lotteries", True),
        ("open-daily-lottery", "lotteries.tasks.open_daily_lottery", True),
    ]
    html = response.content.decode()
    assert html.count(">open-daily-lottery<") == 1
    assert html.count(">close-due-lotteries<") == 1


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
            "phone_number": "+15550009999",
            "external_account_id": player.external_account_id,
            "is_banned": "on",
            "banned_at_0": "2024-01-01",
            "banned_at_1": "00:00:00",
            "ban_reason": "typed into the form",
            "ban_events-TOTAL_FORMS": "0",
            "ban_events-INITIAL_FORMS": "0",
            "ban_events-MIN_NUM_FORMS": "0",
            "ban_events-MAX_NUM_FORMS": "1000",
        },
    )

    # then the form saved, but the ban fields were ignored
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    player.refresh_from_db()
    assert player.phone_number == "+15550009999"
    assert player.is_banned is False
    assert player.banned_at is None
    assert player.ban_reason == ""
    assert PlayerBanEvent.objects.count() == 0
    ballot.refresh_from_db()
    assert ballot.status == Ballot.Status.VALID


# --- Lottery close actions ----------------------------------------------------------


@pytest.mark.django_db
def test_close_due_action_draws_a_due_lottery_with_source_admin(admin_client, staff, make_lottery, make_player, enter):
    # given a lottery whose window ended, with two ballots
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))

    # when staff run "close due" on it
    response = run_action(admin_client, "lotteries_lottery", "close_due", [lottery], index="0")

    # then it is drawn, recorded as an admin action by that staff member
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.DRAWN
    assert Draw.objects.filter(lottery=lottery).count() == 1
    assert list(
        LotteryTransition.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("to_state", "source", "forced", "actor_id")
    ) == [("open", "system", False, None), ("closed", "admin", False, staff.pk), ("drawn", "admin", False, staff.pk)]
    assert f"{lottery.title}: now drawn." in messages_of(admin_client.get(response["Location"]))


@pytest.mark.django_db
def test_close_due_action_refuses_a_lottery_not_due_and_changes_nothing(admin_client, make_lottery, make_player, enter):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    enter(lottery, make_player())

    # when staff run "close due" on it
    response = run_action(admin_client, "lotteries_lottery", "close_due", [lottery], index="0")

    # then it is refused with a message, and nothing changed
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    assert LotteryTransition.objects.filter(lottery=lottery).count() == 1
    assert not Draw.objects.filter(lottery=lottery).exists()
    shown = messages_of(admin_client.get(response["Location"]))
    assert any("entrance window has not ended" in message for message in shown), shown


@pytest.mark.django_db
def test_close_forced_action_draws_before_the_window_ends_and_records_it(
    admin_client, staff, make_lottery, make_player, enter
):
    # given a lottery whose window ends in an hour
    lottery = make_lottery()
    enter(lottery, make_player())

    # when staff run "force close" on it
    response = run_action(admin_client, "lotteries_lottery", "close_forced", [lottery], index="0")

    # then it is drawn, the early close recorded as forced by that staff member through admin
    assert response.status_code == 302
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.DRAWN
    assert Draw.objects.filter(lottery=lottery).count() == 1
    assert list(
        LotteryTransition.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("to_state", "source", "forced", "actor_id")
    ) == [("open", "system", False, None), ("closed", "admin", True, staff.pk), ("drawn", "admin", False, staff.pk)]


@pytest.mark.django_db
def test_close_action_on_a_drawn_lottery_leaves_it_unchanged(admin_client, drawn_lottery):
    draw = Draw.objects.get(lottery=drawn_lottery)
    transitions_before = LotteryTransition.objects.filter(lottery=drawn_lottery).count()

    response = run_action(admin_client, "lotteries_lottery", "close_forced", [drawn_lottery], index="0")

    assert response.status_code == 302
    assert Draw.objects.get(lottery=drawn_lottery) == draw
    assert LotteryTransition.objects.filter(lottery=drawn_lottery).count() == transitions_before
    assert f"{drawn_lottery.title}: already drawn, unchanged." in messages_of(admin_client.get(response["Location"]))


@pytest.mark.django_db
def test_lottery_change_form_is_read_only(admin_client, make_lottery):
    lottery = make_lottery()

    response = admin_client.get(reverse("admin:lotteries_lottery_change", args=[lottery.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="state"' not in html
    assert 'name="closes_at' not in html


# --- Draws: read-only ---------------------------------------------------------------


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


# --- The seed stays secret ------------------------------------------------------------


def test_lottery_seed_is_not_registered_in_admin():
    assert not admin.site.is_registered(LotterySeed)
    assert all(model is not LotterySeed for model in admin.site._registry)


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


@pytest.mark.django_db
def test_no_admin_url_serves_lottery_seeds(admin_client, make_lottery):
    lottery = make_lottery()

    response = admin_client.get(f"/admin/draws/lotteryseed/{lottery.pk}/change/")

    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert "lotteryseed" not in response["Location"]
