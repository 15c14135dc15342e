"""The outbox and its relay, against the real broker: contracts, order, no loss."""

import json
from datetime import datetime, timedelta

import psycopg
import pytest
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from draws.models import LotteryAward
from lifecycle.services import daily_lottery_open, lottery_close
from lotteries.models import Lottery
from lotteries.services import lottery_today
from outbox import relay
from outbox.events import DomainEvent
from outbox.models import OutboxEvent
from outbox.relay import drain, relay_batch
from outbox.services import publish
from tests.kafka import read_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("kafka_broker")]


def relay_everything() -> None:
    drain(budget_seconds=30)
    assert not OutboxEvent.objects.exclude(state="published").exists()


def test_a_daily_lottery_drawn_through_the_close_path_yields_its_award_and_lifecycle_messages(
    kafka_broker, make_player, enter
):
    yesterday = daily_lottery_open(day=lottery_today() - timedelta(days=1))
    players = [make_player() for _ in range(3)]
    for player in players:
        enter(yesterday, player, now=yesterday.closes_at - timedelta(hours=1))
    lottery_close(lottery_id=yesterday.pk, source="beat")
    award = LotteryAward.objects.get(lottery=yesterday)
    key = str(yesterday.pk)

    relay_everything()

    awards = read_messages(kafka_broker.bootstrap, ["lottery.v1.award"], keys={key}, expect=1)
    assert len(awards) == 1
    message = awards[0]
    envelope = message.value
    assert set(envelope) == {"id", "type", "version", "occurred_at", "aggregate", "data"}
    assert (envelope["type"], envelope["version"]) == ("AwardCreated", 1)
    assert envelope["aggregate"] == {"type": "lottery", "id": key}
    assert datetime.fromisoformat(envelope["occurred_at"]).tzinfo is not None
    draw = yesterday.draw
    winner = award.player
    assert envelope["data"] == {
        "lottery_id": yesterday.pk,
        "award_id": award.pk,
        "player_id": winner.pk,
        "player_external_id": winner.external_account_id,
        "rank": 1,
        "prize": yesterday.prize,
        "win_sum": None,
        "currency": None,
        "status": "played_out",
        "draw_id": draw.pk,
        "entries_digest": draw.entries_digest,
        # A drop's claim window and a promoted alternate's origin: none for a daily award.
        "claim_deadline": None,
        "promotes_award_id": None,
        "alternate_rank": None,
    }
    assert message.key == key
    assert message.headers == {
        "messageType": "lotteryAwardCreated",
        "event-id": envelope["id"],
        "content-type": "application/json",
    }

    lifecycle = read_messages(kafka_broker.bootstrap, ["lottery.v1.lifecycle"], keys={key}, expect=3)
    assert [m.headers["messageType"] for m in lifecycle] == ["lotteryOpened", "lotteryClosed", "lotteryDrawn"]
    assert [m.value["type"] for m in lifecycle] == ["LotteryOpened", "LotteryClosed", "LotteryDrawn"]
    assert len({m.partition for m in lifecycle}) == 1  # one key, one partition, in order
    assert lifecycle[2].value["data"]["seed"] == draw.seed
    entries = read_messages(kafka_broker.bootstrap, ["lottery.v1.entry"], keys={key}, expect=3)
    assert sorted(m.value["data"]["player_id"] for m in entries) == sorted(p.pk for p in players)
    assert {m.headers["messageType"] for m in entries} == {"lotteryEntryCreated"}


def test_a_rolled_back_transaction_publishes_nothing(kafka_broker, make_lottery):
    lottery = make_lottery()
    relay_everything()

    with pytest.raises(RuntimeError, match="changed my mind"), transaction.atomic():
        lottery_close(lottery_id=lottery.pk, source="api", force=True)
        raise RuntimeError("changed my mind")
    relay_everything()

    assert Lottery.objects.get(pk=lottery.pk).state == "open"
    assert list(OutboxEvent.objects.filter(key=str(lottery.pk)).values_list("event_type", flat=True)) == [
        "LotteryOpened"
    ]
    lifecycle = read_messages(
        kafka_broker.bootstrap, ["lottery.v1.lifecycle"], keys={str(lottery.pk)}, expect=2, timeout=3
    )
    assert [m.value["type"] for m in lifecycle] == ["LotteryOpened"]


def test_publish_outside_a_transaction_is_refused():
    event = DomainEvent(type="LotteryClosed", aggregate_type="lottery", aggregate_id="1", data={})

    with pytest.raises(RuntimeError, match="inside the transaction"):
        publish(event)

    assert not OutboxEvent.objects.exists()


def test_a_crash_between_send_and_mark_resends_the_same_event_id_and_loses_nothing(
    kafka_broker, make_lottery, monkeypatch
):
    lottery = make_lottery()
    key = str(lottery.pk)
    with transaction.atomic():
        publish(
            *[
                DomainEvent(type="LotteryClosed", aggregate_type="lottery", aggregate_id=key, data={"n": n})
                for n in range(5)
            ]
        )
    ids = [str(i) for i in OutboxEvent.objects.filter(key=key).order_by("id").values_list("event_id", flat=True)]
    assert len(ids) == 6  # LotteryOpened and the five above

    # The relay sends, then dies before it can mark the rows published.
    monkeypatch.setattr(relay, "_MARK_PUBLISHED_SQL", "UPDATE outbox_outboxevent SET no_such_column = 1")
    with pytest.raises(DatabaseError):
        relay_batch()
    assert OutboxEvent.objects.filter(key=key, state="pending").count() == 6
    monkeypatch.undo()
    relay_everything()

    messages = read_messages(kafka_broker.bootstrap, ["lottery.v1.lifecycle"], keys={key}, expect=12)
    # Everything twice, in order both times: sent before the crash, and again after.
    assert [m.headers["event-id"] for m in messages] == ids + ids


def test_rows_are_marked_published_only_with_the_broker_acknowledgement(kafka_broker, make_lottery):
    lottery = make_lottery()

    result = relay_batch()

    row = OutboxEvent.objects.get(key=str(lottery.pk))
    assert result.published >= 1
    assert row.state == "published"
    assert row.published_at is not None and row.published_at >= row.created_at


def test_every_stored_envelope_keeps_the_contract(make_lottery, make_player, enter):
    lottery = make_lottery(closes_at=timezone.now() + timedelta(minutes=1))
    enter(lottery, make_player())
    lottery_close(lottery_id=lottery.pk, source="api", force=True)

    for row in OutboxEvent.objects.filter(key=str(lottery.pk)):
        envelope = json.loads(row.value)
        assert envelope["id"] == str(row.event_id)
        assert envelope["type"] == row.event_type
        assert set(envelope) == {"id", "type", "version", "occurred_at", "aggregate", "data"}
        assert envelope["version"] == 1 and isinstance(envelope["data"], dict)
        assert envelope["aggregate"] == {"type": "lottery", "id": str(lottery.pk)}
        assert datetime.fromisoformat(envelope["occurred_at"]).utcoffset() is not None  # RFC 3339, with its offset


def test_a_row_another_relay_holds_keeps_its_keys_later_rows_back_and_no_other_key(kafka_broker):
    held, free = "held-key", "free-key"
    with transaction.atomic():
        publish(
            *[
                DomainEvent(type="LotteryClosed", aggregate_type="lottery", aggregate_id=key, data={"n": n})
                for n in range(3)
                for key in (held, free)
            ]
        )
    first = OutboxEvent.objects.filter(key=held).order_by("id").first()
    assert first is not None
    order = {
        key: [str(i) for i in OutboxEvent.objects.filter(key=key).order_by("id").values_list("event_id", flat=True)]
        for key in (held, free)
    }
    db = connections["default"].settings_dict
    other_relay = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
    try:
        # Another relay has claimed the held key's first row and not yet marked it.
        other_relay.execute("SELECT id FROM outbox_outboxevent WHERE id = %s FOR UPDATE", [first.pk])

        result = relay_batch()

        assert (result.claimed, result.published, result.held_back) == (5, 3, 2)
        assert set(OutboxEvent.objects.filter(key=held).values_list("state", flat=True)) == {"pending"}
        assert set(OutboxEvent.objects.filter(key=free).values_list("state", flat=True)) == {"published"}
    finally:
        other_relay.rollback()  # it gave up: the row is pending again, for anyone
        other_relay.close()

    relay_everything()

    messages = read_messages(kafka_broker.bootstrap, ["lottery.v1.lifecycle"], keys={held, free}, expect=6)
    for key in (held, free):
        assert [m.headers["event-id"] for m in messages if m.key == key] == order[key]
