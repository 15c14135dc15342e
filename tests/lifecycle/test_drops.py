"""Drops: created by staff (admin, API) or the platform (command, token), scheduled or open, drawn with ranked
winners and alternates from one shuffle, every unit of the prize accounted for."""

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from draws import algorithm
from draws.models import Draw, LotteryAward, LotterySeed
from draws.services import draw_verify
from entries.errors import DuplicateEntry
from entries.models import Ballot
from entries.services import ballot_submit
from lifecycle.services import drop_create, lottery_close, scheduled_lottery_open
from lifecycle.tasks import OPEN, lottery_timers_arm, open_due_lotteries
from lotteries.errors import InvalidLottery, LotteryNotOpen
from lotteries.models import Lottery
from outbox.models import OutboxEvent
from tests.commands import run

pytestmark = pytest.mark.django_db

DROPS_TOKEN = {"HTTP_X_INTERNAL_TOKEN": "test-drops-token-00000"}  # tests.settings: INTERNAL_DROPS_TOKEN


def iso(moment: datetime) -> str:
    return moment.isoformat()


def drop_terms(**overrides):
    now = timezone.now()
    return {
        "title": "Sneaker drop",
        "prize": "Air Max 1 '86, size 42",
        "prize_quantity": 3,
        "closes_at": iso(now + timedelta(hours=1)),
        **overrides,
    }


def events_of(lottery: Lottery, event_type: str) -> list[dict[str, Any]]:
    """The ``data`` of the lottery's events of a type, as written to the outbox (keyed by the lottery id)."""
    rows = OutboxEvent.objects.filter(key=str(lottery.pk), event_type=event_type).order_by("id")
    return [json.loads(row.value)["data"] for row in rows]


def a_drop(*, quantity=3, alternates=0, winners=None, opens_in=timedelta(hours=-1), closes_in=timedelta(hours=1)):
    now = timezone.now()
    return drop_create(
        title="Test drop",
        prize="Limited jacket",
        prize_quantity=quantity,
        winners_count=winners,
        alternates_count=alternates,
        opens_at=now + opens_in,
        closes_at=now + closes_in,
        source="system",
    )


# --- Creating ------------------------------------------------------------------------


def test_the_drops_token_creates_an_open_drop_that_publishes_its_commitment_and_terms(api):
    response = api.post(reverse("drop-create"), drop_terms(alternates_count=2), format="json", **DROPS_TOKEN)

    assert response.status_code == 201, response.json()
    body = response.json()
    drop = Lottery.objects.get(pk=body["id"])
    assert (body["kind"], body["state"], body["prize_quantity"], body["winners_count"], body["alternates_count"]) == (
        "drop",
        "open",
        3,
        3,  # the quantity, by default
        2,
    )
    assert body["seed_commitment"] == algorithm.commitment(bytes(LotterySeed.objects.get(lottery=drop).seed))
    assert [(t["from_state"], t["to_state"], t["source"]) for t in body["transitions"]] == [("", "open", "api")]
    [opened] = events_of(drop, "LotteryOpened")
    assert opened["prize"] == "Air Max 1 '86, size 42"
    assert (opened["prize_quantity"], opened["winners_count"], opened["alternates_count"]) == (3, 3, 2)
    assert (opened["opens_at"], opened["closes_at"]) == (drop.opens_at.isoformat(), drop.closes_at.isoformat())
    assert opened["seed_commitment"] == drop.seed_commitment


def test_a_drop_opening_later_is_scheduled_refuses_ballots_and_opens_at_its_moment(api, make_player, client_for):
    now = timezone.now()
    opens_at = now + timedelta(minutes=10)
    response = api.post(
        reverse("drop-create"), drop_terms(opens_at=iso(opens_at), closes_at=iso(now + timedelta(hours=1))),
        format="json", **DROPS_TOKEN,
    )  # fmt: skip
    assert response.status_code == 201
    drop = Lottery.objects.get(pk=response.json()["id"])
    assert drop.state == "scheduled"
    assert [e["seed_commitment"] for e in events_of(drop, "LotteryScheduled")] == [drop.seed_commitment]
    assert events_of(drop, "LotteryOpened") == []

    player = make_player()
    refused = client_for(player).post(reverse("ballot-submit", args=[drop.pk]))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "lottery_not_open"
    assert refused.json()["error"]["details"]["opens_at"] == drop.opens_at.isoformat()
    assert not Ballot.objects.filter(lottery=drop).exists()

    # Too early, the opener changes nothing; at opens_at it opens, once.
    assert not scheduled_lottery_open(lottery_id=drop.pk, source="timer", now=opens_at - timedelta(seconds=1)).changed
    assert scheduled_lottery_open(lottery_id=drop.pk, source="timer", now=opens_at).changed
    assert not scheduled_lottery_open(lottery_id=drop.pk, source="beat", now=opens_at).changed
    drop.refresh_from_db()
    assert drop.state == "open"
    assert list(drop.transitions.values_list("from_state", "to_state", "source")) == [
        ("", "scheduled", "api"),
        ("scheduled", "open", "timer"),
    ]
    assert len(events_of(drop, "LotteryOpened")) == 1
    assert ballot_submit(lottery_id=drop.pk, player=player, now=opens_at).ballot.status == "valid"


def test_a_scheduled_drop_cannot_be_closed_even_forced():
    drop = a_drop(opens_in=timedelta(minutes=5))

    with pytest.raises(LotteryNotOpen):
        lottery_close(lottery_id=drop.pk, source="command", force=True)
    assert Lottery.objects.get(pk=drop.pk).state == "scheduled"


def test_beats_sweep_queues_the_opening_of_only_the_scheduled_drops_whose_moment_came(monkeypatch):
    queued = []
    monkeypatch.setattr("lifecycle.tasks.open_lottery.delay", lambda *args: queued.append(args))
    now = timezone.now()
    # Created ten seconds ago to open five seconds ago: its timer was missed.
    due = drop_create(
        title="Due", prize="Cap", prize_quantity=1, opens_at=now - timedelta(seconds=5),
        closes_at=now + timedelta(hours=1), source="system", now=now - timedelta(seconds=10),
    )  # fmt: skip
    later = a_drop(opens_in=timedelta(hours=1), closes_in=timedelta(hours=2))

    assert open_due_lotteries.run() == [due.pk]
    assert queued == [(due.pk, "beat")]
    assert scheduled_lottery_open(lottery_id=due.pk, source="beat").changed
    assert Lottery.objects.get(pk=due.pk).state == "open"
    assert Lottery.objects.get(pk=later.pk).state == "scheduled"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"winners_count": 4}, "winners_count"),  # more winners than units of the prize
        ({"closes_at": iso(timezone.now() - timedelta(minutes=1))}, "closes_at"),  # the window already ended
        ({"opens_at": iso(timezone.now() + timedelta(hours=2))}, "closes_at"),  # closes before it opens
    ],
)
def test_a_drop_that_could_not_run_as_asked_is_refused_with_the_field(api, overrides, field):
    response = api.post(reverse("drop-create"), drop_terms(**overrides), format="json", **DROPS_TOKEN)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_lottery"
    assert response.json()["error"]["details"]["field"] == field
    assert not Lottery.objects.exists()


@pytest.mark.parametrize(
    "bad", [{"prize_quantity": "3"}, {"prize_quantity": 0}, {"title": "  "}, {"closes_at": "soon"}]
)
def test_malformed_terms_are_a_validation_error(api, bad):
    response = api.post(reverse("drop-create"), drop_terms(**bad), format="json", **DROPS_TOKEN)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_a_window_written_with_an_offset_past_postgresqls_is_the_same_moment_stored(api):
    # RFC 3339 allows +20:22; PostgreSQL takes offsets to 15:59 only, so the door keeps the moment in UTC
    closes_at = (timezone.now() + timedelta(days=400)).astimezone(timezone.get_fixed_timezone(20 * 60 + 22))

    response = api.post(reverse("drop-create"), drop_terms(closes_at=iso(closes_at)), format="json", **DROPS_TOKEN)

    assert response.status_code == 201, response.json()
    assert Lottery.objects.get(pk=response.json()["id"]).closes_at == closes_at


def test_the_command_creates_a_scheduled_drop():
    out, _ = run("create_drop", "--title", "Vinyl", "--prize", "Signed LP", "--quantity", "2",
                 "--opens-at", "+10m", "--closes-at", "+1h", "--alternates", "1")  # fmt: skip

    drop = Lottery.objects.get(kind="drop")
    assert (drop.state, drop.prize_quantity, drop.winners_count, drop.alternates_count) == ("scheduled", 2, 2, 1)
    assert f"Drop #{drop.pk} 'Vinyl' created, scheduled" in out
    assert drop.transitions.get().source == "command"


def test_timers_are_queued_only_within_the_horizon_and_once(settings, monkeypatch):
    settings.LOTTERY_TIMER_HORIZON_SECONDS = 600
    queued = []
    monkeypatch.setattr("lifecycle.tasks.lottery_timer.apply_async", lambda args, eta: queued.append((*args, eta)))
    near = a_drop(opens_in=timedelta(minutes=5), closes_in=timedelta(hours=1))
    far = a_drop(opens_in=timedelta(hours=2), closes_in=timedelta(hours=3))

    assert lottery_timers_arm([near, far]) == 1
    assert lottery_timers_arm([near, far]) == 0  # already queued
    assert queued == [(near.pk, OPEN, near.opens_at)]


# --- Drawing -------------------------------------------------------------------------


@pytest.fixture
def due_drop(make_player, enter):
    """A drop whose window is about to end, with ``entrants`` valid ballots: call it with the terms."""

    def make(*, quantity: int, alternates: int, entrants: int):
        drop = a_drop(quantity=quantity, alternates=alternates, closes_in=timedelta(minutes=1))
        ballots = [enter(drop, make_player()) for _ in range(entrants)]
        return drop, ballots

    return make


def test_a_drop_draws_ranked_winners_then_alternates_from_one_shuffle(due_drop, make_player):
    drop, ballots = due_drop(quantity=3, alternates=2, entrants=10)
    cheater = make_player(phone_number=Ballot.objects.get(pk=ballots[0].pk).phone_number)
    with pytest.raises(DuplicateEntry):
        ballot_submit(lottery_id=drop.pk, player=cheater)

    draw = lottery_close(lottery_id=drop.pk, source="timer", now=drop.closes_at).draw

    assert draw is not None
    assert (draw.entries_count, len(draw.winning_ballot_ids), len(draw.alternate_ballot_ids)) == (10, 3, 2)
    assert draw.unawarded_quantity == 0
    # The alternates are the next positions of the same Fisher-Yates: a draw of five picks the same five.
    ids = sorted(b.pk for b in ballots)
    five = algorithm.draw(seed=bytes.fromhex(draw.seed), ballot_ids=ids, winners_count=5).winning_ballot_ids
    assert five == [*draw.winning_ballot_ids, *draw.alternate_ballot_ids]
    awards = list(LotteryAward.objects.filter(lottery=drop).order_by("rank"))
    assert [(a.rank, a.ballot_id, a.prize) for a in awards] == [
        (rank, ballot_id, "Limited jacket") for rank, ballot_id in enumerate(draw.winning_ballot_ids, start=1)
    ]
    assert [e["rank"] for e in events_of(drop, "AwardCreated")] == [1, 2, 3]
    [drawn] = events_of(drop, "LotteryDrawn")
    assert drawn["alternate_ballot_ids"] == list(draw.alternate_ballot_ids)
    verification = draw_verify(draw=draw)
    assert verification.matches and verification.alternates_match


def test_with_fewer_entrants_than_the_quantity_everyone_wins_and_the_rest_is_recorded(due_drop, api):
    drop, ballots = due_drop(quantity=5, alternates=2, entrants=2)

    draw = lottery_close(lottery_id=drop.pk, source="timer", now=drop.closes_at).draw

    assert draw is not None
    assert sorted(draw.winning_ballot_ids) == sorted(b.pk for b in ballots)
    assert (list(draw.alternate_ballot_ids), draw.unawarded_quantity) == ([], 3)
    assert LotteryAward.objects.filter(lottery=drop).count() == 2
    detail = api.get(reverse("lottery-detail", args=[drop.pk])).json()
    assert (detail["prize_quantity"], detail["unawarded_quantity"], len(detail["winners"])) == (5, 3, 2)
    document = api.get(reverse("draw-detail", args=[draw.pk])).json()
    assert (document["unawarded_quantity"], document["alternate_ballot_ids"]) == (3, [])
    assert draw_verify(draw=Draw.objects.get(pk=draw.pk)).matches


def test_winners_count_above_the_quantity_is_refused_by_the_service():
    with pytest.raises(InvalidLottery):
        a_drop(quantity=2, winners=3)


# --- Who may create one ----------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("operations", 201), ("support", 403), ("compliance", 403)])
def test_only_staff_with_create_drop_create_one_over_the_api(make_player, client_for, role, status):
    staff = make_player(roles=[role])

    response = client_for(staff).post(reverse("drop-create"), drop_terms(), format="json")

    assert response.status_code == status, response.json()
    if status == 201:
        drop = Lottery.objects.get(pk=response.json()["id"])
        assert drop.transitions.get().actor_id == staff.pk
    else:
        assert response.json()["error"]["details"]["permission"] == "lotteries.create_drop"
        assert not Lottery.objects.exists()


@pytest.mark.parametrize("headers", [{}, {"HTTP_X_INTERNAL_TOKEN": "test-internal-token"}])
def test_anyone_else_and_another_purposes_token_are_refused(api, make_player, client_for, headers):
    assert api.post(reverse("drop-create"), drop_terms(), format="json", **headers).status_code == 403
    player = client_for(make_player())
    assert player.post(reverse("drop-create"), drop_terms(), format="json", **headers).status_code == 403
    assert not Lottery.objects.exists()


def _admin_form(opens_at, closes_at, **overrides):
    return {
        "title": "Admin drop",
        "prize": "Watch",
        "prize_quantity": "2",
        "opens_at_0": opens_at.strftime("%Y-%m-%d"),
        "opens_at_1": opens_at.strftime("%H:%M:%S"),
        "closes_at_0": closes_at.strftime("%Y-%m-%d"),
        "closes_at_1": closes_at.strftime("%H:%M:%S"),
        "winners_count": "",
        "alternates_count": "1",
        **overrides,
    }


def test_operations_staff_create_a_drop_in_admin_through_the_service(client, make_player):
    staff = make_player(roles=["operations"])
    client.force_login(staff)
    now = timezone.now().replace(microsecond=0)
    add = reverse("admin:lotteries_lottery_add")

    assert client.get(add).status_code == 200
    response = client.post(add, _admin_form(now + timedelta(minutes=30), now + timedelta(hours=2)))

    assert response.status_code == 302, response.content.decode()[:2000]
    drop = Lottery.objects.get()
    assert (drop.kind, drop.state, drop.prize_quantity, drop.winners_count, drop.alternates_count) == (
        "drop",
        "scheduled",
        2,
        2,
        1,
    )
    assert LotterySeed.objects.filter(lottery=drop).exists()
    assert list(drop.transitions.values_list("source", "actor_id")) == [("admin", staff.pk)]
    assert len(events_of(drop, "LotteryScheduled")) == 1


def test_the_admin_form_shows_the_rule_a_drop_breaks(client, make_player):
    client.force_login(make_player(roles=["operations"]))
    now = timezone.now().replace(microsecond=0)

    response = client.post(
        reverse("admin:lotteries_lottery_add"),
        _admin_form(now, now + timedelta(hours=1), winners_count="5"),
    )

    assert response.status_code == 200
    assert "winners_count cannot exceed the prize quantity" in response.content.decode()
    assert not Lottery.objects.exists()


@pytest.mark.parametrize("role", ["support", "compliance"])
def test_staff_without_create_drop_get_no_add_form_in_admin(client, make_player, role):
    client.force_login(make_player(roles=[role]))
    now = timezone.now().replace(microsecond=0)
    add = reverse("admin:lotteries_lottery_add")

    assert client.get(add).status_code == 403
    assert client.post(add, _admin_form(now, now + timedelta(hours=1))).status_code == 403
    assert not Lottery.objects.exists()
