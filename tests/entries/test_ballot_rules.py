"""Ballot submission rules (SPEC section 3), as a player meets them through the API."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from entries.models import Ballot
from entries.services import ballot_submit, player_ban
from lifecycle.services import lottery_close

pytestmark = pytest.mark.django_db


def submit(client, lottery, **headers):
    return client.post(reverse("ballot-submit", args=[lottery.pk]), headers=headers)


def error_code(response):
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]["code"]


def test_a_player_enters_an_open_lottery(make_player, make_lottery, client_for):
    lottery = make_lottery()
    player = make_player()

    response = submit(client_for(player), lottery)

    assert response.status_code == 201
    ballot = Ballot.objects.get(lottery=lottery, player=player)
    assert response.json() == {
        "id": ballot.pk,
        "lottery_id": lottery.pk,
        "status": "valid",
        "rejection_reason": "",
        "created_at": response.json()["created_at"],
    }
    assert (ballot.phone_number, ballot.external_account_id) == (player.phone_number, player.external_account_id)


def test_a_second_ballot_over_the_limit_is_refused_and_not_stored(make_player, make_lottery, client_for):
    lottery = make_lottery()
    client = client_for(make_player())
    assert submit(client, lottery).status_code == 201

    response = submit(client, lottery)

    assert response.status_code == 409
    assert error_code(response) == "ballot_limit_reached"
    assert response.json()["error"]["details"] == {"lottery_id": lottery.pk, "limit": 1}
    assert lottery.ballots.count() == 1


@override_settings(MAX_BALLOTS_PER_PLAYER=3)
def test_the_limit_is_configurable_and_a_player_may_reuse_their_own_phone(make_player, make_lottery, client_for):
    lottery = make_lottery()
    client = client_for(make_player())

    statuses = [submit(client, lottery).status_code for _ in range(4)]

    assert statuses == [201, 201, 201, 409]
    assert sorted(lottery.ballots.values_list("slot", flat=True)) == [1, 2, 3]


def test_a_drawn_lottery_refuses_ballots(make_player, make_lottery, client_for, enter):
    lottery = make_lottery()
    enter(lottery, make_player())
    lottery_close(lottery_id=lottery.pk, source="api", force=True)

    response = submit(client_for(make_player()), lottery)

    assert response.status_code == 409
    assert error_code(response) == "lottery_closed"
    assert lottery.ballots.count() == 1


def test_no_ballot_at_or_after_closes_at_even_while_the_lottery_is_still_open(make_player, make_lottery, enter):
    from lotteries.errors import LotteryClosed

    lottery = make_lottery()
    for moment in (lottery.closes_at, lottery.closes_at + timedelta(seconds=1)):
        with pytest.raises(LotteryClosed):
            enter(lottery, make_player(), now=moment)
    enter(lottery, make_player(), now=lottery.closes_at - timedelta(microseconds=1))

    assert lottery.ballots.count() == 1


def test_a_banned_player_is_refused_and_nothing_is_stored(make_player, make_lottery, client_for):
    lottery = make_lottery()
    player = make_player()
    player_ban(player_id=player.pk, reason="chargebacks", actor=None)

    response = submit(client_for(player), lottery)

    assert response.status_code == 403
    assert error_code(response) == "player_banned"
    assert not Ballot.objects.filter(player=player).exists()


def test_an_unknown_lottery_is_404(make_player, client_for):
    response = client_for(make_player()).post(reverse("ballot-submit", args=[424242]))

    assert response.status_code == 404
    assert error_code(response) == "lottery_not_found"


@pytest.mark.parametrize(
    ("shared", "reason"),
    [("phone_number", "shared_phone_number"), ("external_account_id", "shared_external_account")],
)
def test_another_player_sharing_phone_or_account_is_stored_rejected(
    shared, reason, make_player, make_lottery, client_for
):
    lottery = make_lottery()
    honest = make_player()
    assert submit(client_for(honest), lottery).status_code == 201
    cheater = make_player(**{shared: getattr(honest, shared)})

    response = submit(client_for(cheater), lottery)

    assert response.status_code == 409
    assert error_code(response) == "duplicate_entry"
    rejected = Ballot.objects.get(player=cheater)
    assert (rejected.status, rejected.rejection_reason) == ("rejected", reason)
    assert response.json()["error"]["details"] == {"ballot_id": rejected.pk, "reason": reason}
    assert lottery.ballots.filter(status="valid").count() == 1


def test_the_same_phone_in_another_lottery_is_fine(make_player, make_lottery, client_for):
    first, second = make_lottery(), make_lottery()
    honest = make_player()
    twin = make_player(phone_number=honest.phone_number)
    assert submit(client_for(honest), first).status_code == 201

    assert submit(client_for(twin), second).status_code == 201


def test_empty_phone_and_account_never_count_as_shared(make_player, make_lottery, client_for):
    lottery = make_lottery()
    players = [make_player(phone_number="", external_account_id="") for _ in range(3)]

    statuses = [submit(client_for(p), lottery).status_code for p in players]

    assert statuses == [201, 201, 201]
    assert lottery.ballots.filter(status="valid").count() == 3


def test_a_retried_idempotency_key_returns_the_first_ballot(make_player, make_lottery, client_for):
    lottery = make_lottery()
    client = client_for(make_player())

    first = submit(client, lottery, **{"Idempotency-Key": "retry-1"})
    again = submit(client, lottery, **{"Idempotency-Key": "retry-1"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert lottery.ballots.count() == 1


def test_an_idempotency_key_reused_for_another_lottery_is_422(make_player, make_lottery, client_for):
    first, second = make_lottery(), make_lottery()
    client = client_for(make_player())
    assert submit(client, first, **{"Idempotency-Key": "k"}).status_code == 201

    response = submit(client, second, **{"Idempotency-Key": "k"})

    assert response.status_code == 422
    assert error_code(response) == "idempotency_key_reused"
    assert second.ballots.count() == 0


def test_keys_are_per_player(make_player, make_lottery, client_for):
    lottery = make_lottery()

    statuses = [submit(client_for(make_player()), lottery, **{"Idempotency-Key": "same"}).status_code for _ in "ab"]

    assert statuses == [201, 201]
    assert lottery.ballots.count() == 2


def test_a_retried_rejected_submission_gets_the_same_refusal_without_a_second_ballot(
    make_player, make_lottery, client_for
):
    lottery = make_lottery()
    honest = make_player()
    submit(client_for(honest), lottery)
    cheater = client_for(make_player(phone_number=honest.phone_number))

    first = submit(cheater, lottery, **{"Idempotency-Key": "x"})
    again = submit(cheater, lottery, **{"Idempotency-Key": "x"})

    assert (first.status_code, again.status_code) == (409, 409)
    assert again.json() == first.json()
    assert lottery.ballots.filter(status="rejected").count() == 1


def test_my_ballots_lists_rejected_and_void_ones_too(make_player, make_lottery, client_for, enter):
    lottery = make_lottery()
    player = make_player()
    client = client_for(player)
    submit(client, lottery)
    player_ban(player_id=player.pk, reason="test", actor=None)

    body = client.get(reverse("my-ballots")).json()

    assert body["count"] == 1
    assert body["results"][0]["status"] == "void"
    voided_at = Ballot.objects.get(player=player).voided_at
    assert voided_at is not None
    assert timezone.now() - timedelta(minutes=1) < voided_at <= timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_ballot_whose_connection_died_before_anything_was_written_is_retried_once(make_lottery, make_player):
    import psycopg
    from django.db import connection

    # given the server dropped this process's connection (a restart, a failover) while it sat idle
    lottery, player = make_lottery(), make_player()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = connection.settings_dict
    address = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "dbname": db["NAME"]}
    with psycopg.connect(**address, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    # when the player submits a ballot, then it is stored once, on a fresh connection
    result = ballot_submit(lottery_id=lottery.pk, player=player)

    assert result.ballot.status == "valid"
    assert Ballot.objects.filter(lottery=lottery, player=player).count() == 1


@pytest.mark.django_db(transaction=True)
@override_settings(MAX_BALLOTS_PER_PLAYER=3)
def test_a_ballot_whose_connection_died_after_its_statement_committed_is_found_not_stored_twice(
    make_lottery, make_player, monkeypatch
):
    from django.db import OperationalError, connection

    from entries import services
    from outbox.models import OutboxEvent

    # given the server commits the ballot's one statement, then the connection goes before the answer
    # (room for three ballots: a blind retry would store a second one)
    lottery, player = make_lottery(), make_player()
    real_cursor = connection.cursor
    lost = []

    class CommittedThenLost:
        def __init__(self) -> None:
            self.cursor = real_cursor()

        def __enter__(self) -> "CommittedThenLost":
            return self

        def __exit__(self, *exc: object) -> None:
            self.cursor.close()

        def execute(self, statement: str, params: Any) -> None:
            self.cursor.execute(statement, params)  # autocommit: the ballot and its event are committed
            lost.append(True)
            connection.connection.close()  # the connection is gone before the answer is read
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "cursor", lambda: CommittedThenLost() if not lost else real_cursor())

    # when the player submits a ballot
    result = services.ballot_submit(lottery_id=lottery.pk, player=player)

    # then the fresh connection finds the committed ballot: one ballot, one event, answered as accepted
    assert lost == [True]
    assert result.ballot.status == "valid" and not result.replayed
    assert list(Ballot.objects.filter(lottery=lottery, player=player).values_list("id", flat=True)) == [
        result.ballot.pk
    ]
    events = [json.loads(e.value) for e in OutboxEvent.objects.filter(key=str(lottery.pk))]
    entries = [e["data"] for e in events if "ballot_id" in e["data"]]
    assert entries == [
        {
            "lottery_id": lottery.pk,
            "ballot_id": result.ballot.pk,
            "player_id": player.pk,
            "player_external_id": player.external_account_id,
            "created_at": result.ballot.created_at.isoformat(),
        }
    ]
