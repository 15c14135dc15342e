"""The public read side of the API: lotteries, ballots, winners, draws and their verification."""

import base64
import hashlib
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from draws import algorithm
from draws.models import Draw, LotteryAward, LotterySeed
from entries.errors import DuplicateEntry
from entries.models import Ballot, Player
from entries.services import ballot_submit, player_ban
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.services import day_bounds, lottery_today


def _drawn_lottery(make_lottery, make_player, enter, *, players=3, winners_count=1, closes_at=None):
    """A drop whose window has ended, entered by ``players`` players, closed and drawn by the service."""
    closes_at = closes_at or timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at, winners_count=winners_count)
    for _ in range(players):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=30))
    outcome = lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM)
    assert outcome.draw is not None
    return Lottery.objects.get(pk=lottery.pk), outcome.draw


def _seed_hex(lottery: Lottery) -> str:
    return bytes(LotterySeed.objects.get(lottery=lottery).seed).hex()


def _streamed_json(response):
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return json.loads(body)


# --- Lotteries list -----------------------------------------------------------


@pytest.mark.django_db
def test_lottery_list_filters_by_kind(api, make_lottery):
    # given a drop and a daily lottery
    drop = make_lottery(kind=Lottery.Kind.DROP)
    daily = daily_lottery_open(day=lottery_today())

    # when the list is filtered by kind
    drops = api.get(reverse("lottery-list"), {"kind": "drop"})
    dailies = api.get(reverse("lottery-list"), {"kind": "daily"})

    # then each kind lists only its own lotteries
    assert drops.status_code == 200
    assert [item["id"] for item in drops.json()["results"]] == [drop.pk]
    assert dailies.status_code == 200
    assert [item["id"] for item in dailies.json()["results"]] == [daily.pk]


@pytest.mark.django_db
def test_lottery_list_filters_by_state(api, make_lottery, make_player, enter):
    # given an open lottery and a drawn one
    open_lottery = make_lottery()
    drawn, _ = _drawn_lottery(make_lottery, make_player, enter)

    # when the list is filtered by state
    opened = api.get(reverse("lottery-list"), {"state": "open"})
    done = api.get(reverse("lottery-list"), {"state": "drawn"})

    # then
    assert [item["id"] for item in opened.json()["results"]] == [open_lottery.pk]
    assert [item["id"] for item in done.json()["results"]] == [drawn.pk]
    assert done.json()["results"][0]["state"] == "drawn"
    assert done.json()["results"][0]["draw_id"] == drawn.draw.pk


@pytest.mark.django_db
def test_lottery_list_filters_by_date(api):
    # given the daily lotteries of three consecutive days
    today = lottery_today()
    lotteries = {
        day: daily_lottery_open(day=day) for day in (today - timedelta(days=1), today, today + timedelta(days=1))
    }

    # when the list is filtered by yesterday's date
    response = api.get(reverse("lottery-list"), {"date": (today - timedelta(days=1)).isoformat()})

    # then only yesterday's lottery is listed
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [item["id"] for item in body["results"]] == [lotteries[today - timedelta(days=1)].pk]
    assert body["results"][0]["day"] == (today - timedelta(days=1)).isoformat()


@pytest.mark.django_db
def test_lottery_list_paginates_with_page_and_page_size(api, make_lottery):
    # given five lotteries
    created = {make_lottery().pk for _ in range(5)}

    # when the three pages of two are requested
    pages = [api.get(reverse("lottery-list"), {"page_size": 2, "page": page}) for page in (1, 2, 3)]

    # then each page says the total, links to the next, and together they list every lottery once
    assert [page.status_code for page in pages] == [200, 200, 200]
    bodies = [page.json() for page in pages]
    assert [body["count"] for body in bodies] == [5, 5, 5]
    assert [len(body["results"]) for body in bodies] == [2, 2, 1]
    assert "page=2" in bodies[0]["next"]
    assert "page_size=2" in bodies[0]["next"]
    assert bodies[0]["previous"] is None
    assert "page=3" in bodies[1]["next"]
    assert bodies[2]["next"] is None
    listed = [item["id"] for body in bodies for item in body["results"]]
    assert sorted(listed) == sorted(created)


@pytest.mark.django_db
def test_lottery_list_follows_next_link_to_the_last_page(api, make_lottery):
    # given three lotteries
    created = {make_lottery().pk for _ in range(3)}

    # when the client follows "next"
    first = api.get(reverse("lottery-list"), {"page_size": 2}).json()
    second = api.get(first["next"]).json()

    # then the second page holds the remaining lottery and is the last
    assert len(second["results"]) == 1
    assert {item["id"] for item in first["results"] + second["results"]} == created
    assert second["next"] is None


@pytest.mark.django_db
def test_lottery_list_is_ordered_newest_day_first(api):
    # given daily lotteries created out of date order: tomorrow, yesterday, today
    today = lottery_today()
    tomorrow = daily_lottery_open(day=today + timedelta(days=1))
    yesterday = daily_lottery_open(day=today - timedelta(days=1))
    current = daily_lottery_open(day=today)

    # when the list is read
    response = api.get(reverse("lottery-list"))

    # then it is newest day first, as the endpoint documents (and as stable pagination needs)
    assert [item["id"] for item in response.json()["results"]] == [tomorrow.pk, current.pk, yesterday.pk]


@pytest.mark.django_db
def test_lottery_list_counts_only_valid_ballots(api, make_lottery, make_player, enter):
    # given a lottery with two valid ballots, one voided by a ban and one rejected as a duplicate
    lottery = make_lottery()
    first, second, banned = make_player(), make_player(), make_player()
    for player in (first, second, banned):
        enter(lottery, player)
    player_ban(player_id=banned.pk, reason="fraud", actor=None)
    cheater = make_player(phone_number=first.phone_number)
    with pytest.raises(DuplicateEntry):
        ballot_submit(lottery_id=lottery.pk, player=cheater)

    # when the list is read
    response = api.get(reverse("lottery-list"))

    # then ballot_count counts the valid ones
    assert lottery.ballots.count() == 4
    assert response.json()["results"][0]["ballot_count"] == 2


# --- Lottery detail -----------------------------------------------------------


@pytest.mark.django_db
def test_lottery_detail_of_an_open_lottery_shows_commitment_and_ballot_count(api, make_lottery, make_player, enter):
    # given an open lottery with two ballots
    lottery = make_lottery(prize="A bicycle", winners_count=2)
    enter(lottery, make_player())
    enter(lottery, make_player())

    # when its detail is read
    response = api.get(reverse("lottery-detail", args=[lottery.pk]))

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == lottery.pk
    assert body["kind"] == "drop"
    assert body["state"] == "open"
    assert body["prize"] == "A bicycle"
    assert body["winners_count"] == 2
    assert body["ballot_count"] == 2
    assert body["seed_commitment"] == lottery.seed_commitment
    assert len(body["seed_commitment"]) == 64
    assert body["draw_id"] is None
    assert body["winners"] == []
    assert [(t["from_state"], t["to_state"], t["source"], t["forced"]) for t in body["transitions"]] == [
        ("", "open", "system", False)
    ]


@pytest.mark.django_db
def test_lottery_detail_never_shows_the_seed_before_the_draw(api, make_lottery, make_player, enter):
    # given an open lottery and its secret seed
    lottery = make_lottery()
    enter(lottery, make_player())
    seed = bytes(LotterySeed.objects.get(lottery=lottery).seed)

    # when its detail and the list are read
    detail = api.get(reverse("lottery-detail", args=[lottery.pk]))
    listing = api.get(reverse("lottery-list"))

    # then neither carries the seed in any usual encoding
    for response in (detail, listing):
        assert response.status_code == 200
        content = response.content.decode()
        assert seed.hex() not in content.lower()
        assert base64.b64encode(seed).decode() not in content
    assert "seed" not in detail.json()


@pytest.mark.django_db
def test_lottery_detail_after_the_draw_the_revealed_seed_hashes_to_the_commitment(
    api, make_lottery, make_player, enter
):
    # given the commitment a lottery published while open, and then its draw
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    published = api.get(reverse("lottery-detail", args=[lottery.pk])).json()["seed_commitment"]
    draw = lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM).draw
    assert draw is not None

    # when its detail and its draw are read
    detail = api.get(reverse("lottery-detail", args=[lottery.pk])).json()
    draw_record = api.get(reverse("draw-detail", args=[detail["draw_id"]])).json()

    # then the seed the draw reveals hashes to the commitment published before the draw
    assert detail["state"] == "drawn"
    assert detail["draw_id"] == draw.pk
    assert detail["seed_commitment"] == published == draw_record["seed_commitment"]
    assert hashlib.sha256(bytes.fromhex(draw_record["seed"])).hexdigest() == published
    assert draw_record["seed"] == _seed_hex(lottery)


@pytest.mark.django_db
def test_lottery_detail_once_drawn_lists_transitions_and_masked_winners(api, make_lottery, make_player, enter):
    # given a drawn lottery with two winners
    lottery, draw = _drawn_lottery(make_lottery, make_player, enter, players=3, winners_count=2)

    # when its detail is read
    body = api.get(reverse("lottery-detail", args=[lottery.pk])).json()

    # then the life cycle and the winners in rank order are shown, players masked
    assert body["state"] == "drawn"
    assert body["ballot_count"] == 3
    assert [(t["from_state"], t["to_state"], t["source"], t["forced"]) for t in body["transitions"]] == [
        ("", "open", "system", False),
        ("open", "closed", "system", False),
        ("closed", "drawn", "system", False),
    ]
    winners = [Ballot.objects.select_related("player").get(pk=pk) for pk in draw.winning_ballot_ids]
    awards = dict(LotteryAward.objects.filter(lottery=lottery).values_list("rank", "id"))
    assert body["winners"] == [
        {
            "award_id": awards[rank],
            "rank": rank,
            "ballot_id": ballot.pk,
            "player": ballot.player.public_name,
            "prize": lottery.prize,
            "status": "played_out",
            "forfeit_reason": "",
            "promotes_award_id": None,
        }
        for rank, ballot in enumerate(winners, start=1)
    ]


# --- My ballots -----------------------------------------------------------------


@pytest.mark.django_db
def test_my_ballots_lists_only_the_callers_ballots_newest_first(client_for, make_player, make_lottery, enter):
    # given two players with ballots in two lotteries
    me, other = make_player(), make_player()
    first, second = make_lottery(), make_lottery()
    mine = [enter(first, me), enter(second, me)]
    enter(first, other)

    # when I list my ballots
    response = client_for(me).get(reverse("my-ballots"))

    # then only mine, newest first
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [(b["id"], b["lottery_id"], b["status"]) for b in body["results"]] == [
        (mine[1].pk, second.pk, "valid"),
        (mine[0].pk, first.pk, "valid"),
    ]


@pytest.mark.django_db
def test_my_ballots_is_paginated(client_for, make_player, make_lottery, enter):
    # given a player with three ballots
    me = make_player()
    ballots = [enter(make_lottery(), me) for _ in range(3)]

    # when the first page of two is read
    body = client_for(me).get(reverse("my-ballots"), {"page_size": 2}).json()

    # then
    assert body["count"] == 3
    assert [b["id"] for b in body["results"]] == [ballots[2].pk, ballots[1].pk]
    assert "page=2" in body["next"]


@pytest.mark.django_db
def test_my_ballots_requires_authentication(api):
    response = api.get(reverse("my-ballots"))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- Winners ---------------------------------------------------------------------


@pytest.mark.django_db
def test_winners_of_a_date_lists_the_daily_and_drop_winners_of_that_day(api, make_player, make_lottery, enter):
    # given yesterday's daily lottery and a drop that closed yesterday, both drawn, and a drop of the day before
    yesterday = lottery_today() - timedelta(days=1)
    start, _end = day_bounds(yesterday)
    daily = daily_lottery_open(day=yesterday, source=TransitionSource.SYSTEM)
    daily_player = make_player()
    enter(daily, daily_player, now=start + timedelta(hours=10))
    lottery_close(lottery_id=daily.pk, source=TransitionSource.SYSTEM)
    drop, drop_draw = _drawn_lottery(make_lottery, make_player, enter, closes_at=start + timedelta(hours=12))
    _older, _older_draw = _drawn_lottery(make_lottery, make_player, enter, closes_at=start - timedelta(hours=12))

    # when the winners of yesterday are read
    response = api.get(reverse("winners"), {"date": yesterday.isoformat()})

    # then both of yesterday's lotteries' winners are listed, and only those
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert sorted((w["lottery_id"], w["rank"], w["day"]) for w in body["results"]) == sorted(
        [(daily.pk, 1, yesterday.isoformat()), (drop.pk, 1, yesterday.isoformat())]
    )
    by_lottery = {w["lottery_id"]: w for w in body["results"]}
    assert by_lottery[drop.pk]["ballot_id"] == drop_draw.winning_ballot_ids[0]
    assert by_lottery[drop.pk]["draw_id"] == drop_draw.pk
    assert by_lottery[daily.pk]["ballot_id"] == Ballot.objects.get(lottery=daily, player=daily_player).pk
    assert by_lottery[daily.pk]["status"] == "played_out"


@pytest.mark.django_db
def test_winners_of_a_date_show_no_phone_number_and_no_names(api, make_player, make_lottery, enter):
    # given a drawn lottery whose only player has a full name, a phone number and an account id
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    winner = make_player(username="margaret", phone_number="+15559876543", external_account_id="acct-secret-77")
    Player.objects.filter(pk=winner.pk).update(first_name="Margaret", last_name="Hamilton", email="mh@example.com")
    enter(lottery, winner, now=closes_at - timedelta(minutes=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM)

    # when the public winners of that day are read
    response = api.get(reverse("winners"), {"date": lottery.day.isoformat()})

    # then the winner is shown masked, with nothing that identifies them
    assert response.status_code == 200
    assert [w["player"] for w in response.json()["results"]] == ["m***t"]
    content = response.content.decode()
    for secret in (
        "+15559876543",
        "5559876543",
        "Margaret",
        "Hamilton",
        "margaret",
        "mh@example.com",
        "acct-secret-77",
    ):
        assert secret not in content
    assert not {"phone_number", "first_name", "last_name", "email", "external_account_id", "player_id"} & set(
        response.json()["results"][0]
    )


@pytest.mark.django_db
def test_winners_of_a_date_without_draws_is_an_empty_list(api, make_lottery):
    # given an open lottery of today
    lottery = make_lottery()

    # when today's winners are read
    response = api.get(reverse("winners"), {"date": lottery.day.isoformat()})

    # then
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


@pytest.mark.django_db
def test_winners_of_a_lottery_in_rank_order(api, make_player, make_lottery, enter):
    # given a drawn lottery with three winners and another drawn lottery
    lottery, draw = _drawn_lottery(make_lottery, make_player, enter, players=4, winners_count=3)
    _drawn_lottery(make_lottery, make_player, enter)

    # when that lottery's winners are read
    response = api.get(reverse("lottery-winners", args=[lottery.pk]))

    # then they are its winners, in the draw's order, masked
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [(w["rank"], w["ballot_id"], w["lottery_id"]) for w in body["results"]] == [
        (rank, ballot_id, lottery.pk) for rank, ballot_id in enumerate(draw.winning_ballot_ids, start=1)
    ]
    assert all("***" in w["player"] for w in body["results"])


# --- Draws and verification ------------------------------------------------------


@pytest.mark.django_db
def test_draw_detail_shows_the_public_record(api, make_player, make_lottery, enter):
    # given a drawn lottery
    lottery, draw = _drawn_lottery(make_lottery, make_player, enter, players=3, winners_count=2)

    # when its draw is read
    response = api.get(reverse("draw-detail", args=[draw.pk]))

    # then it is the immutable record of the draw
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == draw.pk
    assert body["lottery_id"] == lottery.pk
    assert body["algorithm_version"] == algorithm.ALGORITHM_VERSION
    assert body["seed_commitment"] == lottery.seed_commitment
    assert body["seed"] == _seed_hex(lottery)
    assert body["entries_count"] == 3
    assert body["winners_count"] == 2
    assert body["winning_ballot_ids"] == list(draw.winning_ballot_ids)
    valid_ids = sorted(lottery.ballots.filter(status="valid").values_list("id", flat=True))
    assert body["entries_digest"] == algorithm.entries_digest(valid_ids)


@pytest.mark.django_db
def test_draw_verification_lets_anyone_recompute_the_draw(api, make_player, make_lottery, enter):
    # given a drawn lottery that also holds a rejected duplicate and a voided ballot
    closes_at = timezone.now() - timedelta(minutes=5)
    during = closes_at - timedelta(minutes=30)
    lottery = make_lottery(closes_at=closes_at, winners_count=2)
    players = [make_player() for _ in range(5)]
    for player in players:
        enter(lottery, player, now=during)
    cheater = make_player(phone_number=players[0].phone_number)
    with pytest.raises(DuplicateEntry):
        ballot_submit(lottery_id=lottery.pk, player=cheater, now=during)
    player_ban(player_id=players[4].pk, reason="fraud", actor=None)
    draw = lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM).draw
    assert draw is not None

    # when the verification document is fetched
    response = api.get(reverse("draw-verification", args=[draw.pk]))

    # then the server says it matches, and the test recomputes the draw on its own from the document alone
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = _streamed_json(response)
    assert document["verification"]["matches"] is True
    assert document["verification"]["recomputed_winning_ballot_ids"] == document["winning_ballot_ids"]
    expected_ids = sorted(lottery.ballots.filter(status="valid").values_list("id", flat=True))
    assert document["ballot_ids"] == expected_ids
    assert len(document["ballot_ids"]) == document["entries_count"] == 4
    own = algorithm.verify(
        seed_hex=document["seed"],
        seed_commitment=document["seed_commitment"],
        ballot_ids=document["ballot_ids"],
        winners_count=document["winners_count"],
        entries_digest_claimed=document["entries_digest"],
        winning_ballot_ids_claimed=document["winning_ballot_ids"],
    )
    assert own.matches is True
    assert own.commitment_matches and own.entries_digest_matches and own.winners_match
    recomputed = algorithm.draw(
        seed=bytes.fromhex(document["seed"]), ballot_ids=document["ballot_ids"], winners_count=2
    )
    assert recomputed.winning_ballot_ids == document["winning_ballot_ids"] == list(draw.winning_ballot_ids)
    assert hashlib.sha256(bytes.fromhex(document["seed"])).hexdigest() == lottery.seed_commitment


@pytest.mark.django_db
def test_draw_verification_detects_a_tampered_winner_list(api, make_player, make_lottery, enter):
    # given a drawn lottery's verification document
    _lottery, draw = _drawn_lottery(make_lottery, make_player, enter, players=4)
    document = _streamed_json(api.get(reverse("draw-verification", args=[draw.pk])))

    # when someone claims another ballot won
    loser = next(pk for pk in document["ballot_ids"] if pk not in document["winning_ballot_ids"])
    claim = algorithm.verify(
        seed_hex=document["seed"],
        seed_commitment=document["seed_commitment"],
        ballot_ids=document["ballot_ids"],
        winners_count=document["winners_count"],
        entries_digest_claimed=document["entries_digest"],
        winning_ballot_ids_claimed=[loser],
    )

    # then the independent recomputation refuses it
    assert claim.winners_match is False
    assert claim.matches is False
    assert Draw.objects.get(pk=draw.pk).winning_ballot_ids == document["winning_ballot_ids"]
