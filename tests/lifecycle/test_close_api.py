"""POST /api/v1/lotteries/{id}/close: staff or the internal token close and draw a lottery; nobody else can."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from draws.models import Draw, LotteryAward
from lotteries.models import Lottery, LotteryTransition

TOKEN = "test-internal-token"  # tests.settings sets INTERNAL_CLOSE_TOKEN to this


@pytest.fixture
def due_lottery(make_lottery, make_player, enter):
    """A lottery whose entrance window ended five minutes ago, with two valid ballots."""
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    for _ in range(2):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=10))
    return lottery


def close(client, lottery, *, body=None, token=None):
    headers = {} if token is None else {"HTTP_X_INTERNAL_TOKEN": token}
    return client.post(reverse("lottery-close", args=[lottery.pk]), data=body, format="json", **headers)


def transitions(lottery):
    return list(
        LotteryTransition.objects.filter(lottery=lottery)
        .order_by("id")
        .values_list("from_state", "to_state", "source", "forced", "actor_id")
    )


def assert_unchanged(lottery):
    """Still open, with only its opening transition, no draw and no award."""
    lottery.refresh_from_db()
    assert lottery.state == Lottery.State.OPEN
    assert transitions(lottery) == [("", "open", "system", False, None)]
    assert not Draw.objects.filter(lottery=lottery).exists()
    assert not LotteryAward.objects.filter(lottery=lottery).exists()


@pytest.mark.django_db
def test_anonymous_close_is_refused_and_changes_nothing(api, due_lottery):
    # when an anonymous caller closes a due lottery
    response = close(api, due_lottery)

    # then it is refused
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert_unchanged(due_lottery)


@pytest.mark.django_db
def test_non_staff_player_close_is_403_and_changes_nothing(client_for, make_player, due_lottery):
    # given an authenticated player who is not staff
    player = make_player()

    # when they close a due lottery
    response = close(client_for(player), due_lottery, body={"force": True})

    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert_unchanged(due_lottery)


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["wrong-token", TOKEN.upper(), TOKEN + "x", TOKEN[:-1], ""])
def test_wrong_internal_token_is_refused_and_changes_nothing(api, due_lottery, token):
    # when an anonymous caller presents a wrong internal token
    response = close(api, due_lottery, token=token)

    # then it is refused
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert_unchanged(due_lottery)


@pytest.mark.django_db
def test_player_with_a_wrong_internal_token_is_403_and_changes_nothing(client_for, make_player, due_lottery):
    response = close(client_for(make_player()), due_lottery, token="wrong-token")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert_unchanged(due_lottery)


@pytest.mark.django_db
def test_internal_token_closes_and_draws_a_due_lottery(api, due_lottery):
    # when the internal caller closes a due lottery
    response = close(api, due_lottery, token=TOKEN)

    # then it is drawn, recorded as closed by the API with no actor
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed"] is True
    assert body["lottery"]["id"] == due_lottery.pk
    assert body["lottery"]["state"] == "drawn"
    draw = Draw.objects.get(lottery=due_lottery)
    assert body["lottery"]["draw_id"] == draw.pk
    assert len(draw.winning_ballot_ids) == 1
    assert [w["ballot_id"] for w in body["lottery"]["winners"]] == list(draw.winning_ballot_ids)
    assert transitions(due_lottery) == [
        ("", "open", "system", False, None),
        ("open", "closed", "api", False, None),
        ("closed", "drawn", "api", False, None),
    ]
    assert [(t["to_state"], t["source"]) for t in body["lottery"]["transitions"]] == [
        ("open", "system"),
        ("closed", "api"),
        ("drawn", "api"),
    ]
    assert LotteryAward.objects.filter(lottery=due_lottery).count() == 1


@pytest.mark.django_db
def test_staff_closes_a_due_lottery_and_is_recorded_as_actor(client_for, make_player, due_lottery):
    # given a staff member
    staff = make_player(roles=["operations"])

    # when they close a due lottery
    response = close(client_for(staff), due_lottery)

    # then
    assert response.status_code == 200, response.content
    assert response.json()["changed"] is True
    assert response.json()["lottery"]["state"] == "drawn"
    assert transitions(due_lottery) == [
        ("", "open", "system", False, None),
        ("open", "closed", "api", False, staff.pk),
        ("closed", "drawn", "api", False, staff.pk),
    ]


@pytest.mark.django_db
def test_close_of_a_due_lottery_without_ballots_cancels_it(api, make_lottery):
    # given a due lottery nobody entered
    lottery = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))

    # when it is closed
    response = close(api, lottery, token=TOKEN)

    # then it is cancelled, with no draw
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert response.json()["lottery"]["state"] == "cancelled"
    assert response.json()["lottery"]["draw_id"] is None
    assert not Draw.objects.filter(lottery=lottery).exists()
    assert transitions(lottery)[-1] == ("closed", "cancelled", "api", False, None)


@pytest.mark.django_db
def test_close_before_closes_at_is_409_lottery_not_due_and_changes_nothing(api, make_lottery, make_player, enter):
    # given a lottery whose window ends in an hour, with a ballot
    lottery = make_lottery()
    enter(lottery, make_player())

    # when it is closed without force
    response = close(api, lottery, token=TOKEN)

    # then
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "lottery_not_due"
    assert error["details"]["lottery_id"] == lottery.pk
    assert_unchanged(lottery)


@pytest.mark.django_db
def test_staff_close_before_closes_at_without_force_is_409(client_for, make_player, make_lottery):
    lottery = make_lottery()

    response = close(client_for(make_player(roles=["operations"])), lottery, body={"force": False})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "lottery_not_due"
    assert_unchanged(lottery)


@pytest.mark.django_db
def test_forced_close_before_closes_at_draws_and_records_forced(client_for, make_player, make_lottery, enter):
    # given a lottery whose window ends in an hour, with two ballots, and a staff member
    lottery = make_lottery()
    enter(lottery, make_player())
    enter(lottery, make_player())
    staff = make_player(roles=["operations"])

    # when staff force the close
    response = close(client_for(staff), lottery, body={"force": True})

    # then it is drawn and the early close is recorded as forced
    assert response.status_code == 200, response.content
    assert response.json()["changed"] is True
    assert response.json()["lottery"]["state"] == "drawn"
    assert transitions(lottery) == [
        ("", "open", "system", False, None),
        ("open", "closed", "api", True, staff.pk),
        ("closed", "drawn", "api", False, staff.pk),
    ]
    assert [t["forced"] for t in response.json()["lottery"]["transitions"]] == [False, True, False]
    assert Draw.objects.filter(lottery=lottery).count() == 1


@pytest.mark.django_db
def test_second_close_returns_changed_false_with_the_same_draw(api, due_lottery):
    # given a lottery already closed and drawn through the API
    first = close(api, due_lottery, token=TOKEN)
    before = transitions(due_lottery)

    # when it is closed again (even forced)
    second = close(api, due_lottery, body={"force": True}, token=TOKEN)

    # then nothing changes: same draw, same winners, no new transition
    assert first.status_code == second.status_code == 200
    assert first.json()["changed"] is True
    assert second.json()["changed"] is False
    assert second.json()["lottery"]["state"] == "drawn"
    assert second.json()["lottery"]["draw_id"] == first.json()["lottery"]["draw_id"]
    assert second.json()["lottery"]["winners"] == first.json()["lottery"]["winners"]
    assert transitions(due_lottery) == before
    assert Draw.objects.filter(lottery=due_lottery).count() == 1
    assert LotteryAward.objects.filter(lottery=due_lottery).count() == 1


@pytest.mark.django_db
def test_close_of_an_unknown_lottery_is_404(api):
    response = api.post(reverse("lottery-close", args=[987654]), format="json", HTTP_X_INTERNAL_TOKEN=TOKEN)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "lottery_not_found"


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS={"close": (), "stakes": ("test-stakes-token-0000",)})
@pytest.mark.parametrize("token", ["", TOKEN])
def test_empty_internal_close_token_setting_disables_token_access(api, due_lottery, token):
    # given INTERNAL_CLOSE_TOKEN (and its next value) are empty
    # when a caller presents an empty header, or the token that used to be configured
    response = close(api, due_lottery, token=token)

    # then token access is off
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert_unchanged(due_lottery)


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS={"close": (), "stakes": ("test-stakes-token-0000",)})
def test_empty_internal_close_token_setting_still_lets_staff_close(client_for, make_player, due_lottery):
    response = close(client_for(make_player(roles=["operations"])), due_lottery)

    assert response.status_code == 200
    assert response.json()["lottery"]["state"] == "drawn"


@pytest.mark.django_db
@override_settings(INTERNAL_TOKENS={"close": ("another-close-secret",), "stakes": ()})
def test_changed_internal_close_token_setting_is_read_at_request_time(api, due_lottery):
    # when the old token and then the new one are presented
    old = close(api, due_lottery, token=TOKEN)
    assert_unchanged(due_lottery)
    new = close(api, due_lottery, token="another-close-secret")

    # then only the configured one works
    assert old.status_code == 403
    assert new.status_code == 200
    assert new.json()["lottery"]["state"] == "drawn"
