"""A pool's trace (spans in memory): the stake that fills it carries the trace on, the pool links its others.

The consumer's batches are handled as the consumer does (``handle_batch``),
on records whose ``traceparent`` headers name a game service's send spans.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from core import tracing
from lifecycle import tasks
from lotteries.models import Lottery
from outbox.models import OutboxEvent
from pools.consumer import Record, handle_batch
from pools.models import Stake

pytestmark = pytest.mark.django_db


def ids(context: SpanContext | None) -> tuple[int, int] | None:
    return None if context is None else (context.trace_id, context.span_id)


def sent_stake(game: str, n: int, offset: int) -> tuple[Record, tuple[int, int]]:
    """A stake record as a traced game service sends it, and (trace id, span id) of that send."""
    with tracing.span(f"game service send {n}") as send:
        traceparent = tracing.traceparent()
    body = {
        "stakeId": f"{game}-{n}",
        "playerId": f"{game}-player-{n}",
        "gameId": game,
        "amount": "5.00",
        "currency": "EUR",
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    headers = [("messageType", b"player.stakeCreated"), ("traceparent", traceparent.encode())]
    record = Record("player.v1.staked", 0, offset, game.encode(), json.dumps(body).encode(), headers)
    return record, ids(send.get_span_context())  # type: ignore[return-value]


@pytest.mark.parametrize("batches", [[3], [2, 1], [1, 1, 1]], ids=["one batch", "two batches", "three batches"])
def test_the_filling_stake_carries_the_pools_trace_on_and_the_pool_links_its_other_stakes(
    batches, memory_spans, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[tuple[list[int], Any]] = []
    monkeypatch.setattr(
        tasks.draw_lotteries, "delay", lambda ids: queued.append((ids, trace.get_current_span().get_span_context()))
    )
    game = f"game-{uuid.uuid4().hex[:8]}"
    sent = [sent_stake(game, n, offset=n) for n in (1, 2, 3)]
    records = [record for record, _ in sent]

    start = 0
    for size in batches:
        with django_capture_on_commit_callbacks(execute=True):
            handle_batch(records[start : start + size])
        start += size

    spans = list(memory_spans.get_finished_spans())
    process = {s.attributes["stake.id"]: s for s in spans if s.name == "player.v1.staked process"}
    assert [ids(process[f"{game}-{n}"].parent) for n in (1, 2, 3)] == [send for _, send in sent]
    # Each batch: a trace of its own, linked to each of its messages.
    batch_spans = [s for s in spans if s.name == "player.v1.staked batch"]
    assert [len(s.links) for s in batch_spans] == batches
    assert all(s.parent is None for s in batch_spans)
    assert {ids(link.context) for s in batch_spans for link in s.links} == {send for _, send in sent}

    pool = Lottery.objects.get(game_id=game)
    [fill] = [s for s in spans if s.name == "pool fill"]
    filling = process[f"{game}-3"]
    assert ids(fill.parent) == ids(filling.context)
    assert {ids(link.context) for link in fill.links} == {ids(process[f"{game}-{n}"].context) for n in (1, 2)}
    assert (fill.attributes["lottery.id"], fill.attributes["stake.id"]) == (pool.pk, f"{game}-3")
    # The draw is queued in the fill's trace; its LotteryClosed carries it too.
    assert [(lottery_ids, ids(context)) for lottery_ids, context in queued] == [([pool.pk], ids(fill.context))]
    closed = OutboxEvent.objects.get(event_type="LotteryClosed", key=str(pool.pk))
    assert closed.headers["traceparent"].split("-")[1:3] == [
        f"{fill.context.trace_id:032x}",
        f"{fill.context.span_id:016x}",
    ]
    # Each stake keeps its trace; each entry event is in its own stake's trace.
    for n in (1, 2, 3):
        context = process[f"{game}-{n}"].context
        stored = Stake.objects.get(stake_id=f"{game}-{n}").traceparent
        assert stored.split("-")[1:3] == [f"{context.trace_id:032x}", f"{context.span_id:016x}"]
    entries = OutboxEvent.objects.filter(event_type="LotteryEntryCreated", key=str(pool.pk))
    assert {row.headers["traceparent"] for row in entries} == {
        Stake.objects.get(stake_id=f"{game}-{n}").traceparent for n in (1, 2, 3)
    }


def test_untraced_stakes_keep_the_traceparent_their_messages_came_with(django_capture_on_commit_callbacks, monkeypatch):
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.draw_lotteries, "delay", queued.append)
    game = f"game-{uuid.uuid4().hex[:8]}"
    upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    records = [
        Record("player.v1.staked", 0, n, game.encode(), json.dumps({
            "stakeId": f"{game}-{n}", "playerId": f"{game}-p{n}", "gameId": game, "amount": "1.00",
            "currency": "EUR", "occurredAt": datetime.now(UTC).isoformat(),
        }).encode(), [("traceparent", upstream.encode())] if n == 3 else [])
        for n in (1, 2, 3, 4, 5, 6)
    ]  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        handle_batch(records)

    assert list(Stake.objects.filter(lottery__game_id=game).order_by("id").values_list("traceparent", flat=True)) == [
        "", "", upstream, "", "", ""
    ]  # fmt: skip
    assert len(queued) == 1 and len(queued[0]) == 2  # untraced, both filled pools are drawn by one task
    first_pool = Stake.objects.get(stake_id=f"{game}-3").lottery_id
    closed = OutboxEvent.objects.get(event_type="LotteryClosed", key=str(first_pool))
    assert closed.headers == {"traceparent": upstream}  # the filling stake's trace, even untraced here
