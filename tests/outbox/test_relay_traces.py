"""The relay's spans, traced in this process (spans in memory): a send continues the trace of its event's write."""

import uuid

import pytest
from django.db import transaction
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind

from core import tracing
from outbox.events import LIFECYCLE_TOPIC, DomainEvent
from outbox.models import OutboxEvent
from outbox.relay import drain
from outbox.services import publish
from tests.kafka import read_messages

pytestmark = pytest.mark.django_db(transaction=True)


def traceparent(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def ids(context: SpanContext | None) -> tuple[int, int] | None:
    return None if context is None else (context.trace_id, context.span_id)


def closed_event(key: str) -> DomainEvent:
    return DomainEvent(type="LotteryClosed", aggregate_type="lottery", aggregate_id=key, data={})


def test_each_send_is_a_child_of_its_rows_stored_trace_and_the_batch_links_to_every_row(kafka_broker, memory_spans):
    run = uuid.uuid4().hex[:8]  # keys of this run only: the session's topic holds earlier tests' events
    for key in ("request-a", "request-b"):
        with tracing.span(key), transaction.atomic():
            publish(closed_event(f"traced-{key}-{run}"))
    with transaction.atomic():
        publish(closed_event(f"untraced-{run}"))
    OutboxEvent.objects.filter(key=f"untraced-{run}").update(headers={})  # as a process with tracing off writes it
    stored = {row.key: row.headers.get("traceparent") for row in OutboxEvent.objects.all()}

    drain(budget_seconds=10)

    spans = memory_spans.get_finished_spans()
    writes = {s.parent.span_id: s for s in spans if s.name == "outbox publish" and s.parent is not None}
    requests = {s.name: s for s in spans if s.name.startswith("request-")}
    [batch] = [s for s in spans if s.name == "outbox relay batch"]
    sends = {s.attributes["event.id"]: s for s in spans if s.kind == SpanKind.PRODUCER}
    assert batch.parent is None  # a trace of its own, linked to the trace each row was written in
    assert batch.attributes["outbox.claimed"] == 3
    assert batch.attributes["outbox.published"] == 3
    messages = {
        m.key: m
        for m in read_messages(
            kafka_broker.bootstrap,
            [LIFECYCLE_TOPIC],
            keys={f"traced-request-a-{run}", f"traced-request-b-{run}", f"untraced-{run}"},
            expect=3,
            timeout=60,  # the session's topic holds every earlier test's events
        )
    }
    for key in ("request-a", "request-b"):
        write = writes[requests[key].context.span_id]
        row = OutboxEvent.objects.get(key=f"traced-{key}-{run}")
        assert stored[f"traced-{key}-{run}"] == traceparent(write)
        send = sends[str(row.event_id)]
        assert ids(send.parent) == ids(write.context)
        assert send.name == f"{LIFECYCLE_TOPIC} send"
        assert send.attributes["event.type"] == "lotteryClosed"
        assert ids(write.context) in {ids(link.context) for link in batch.links}
        # One traceparent on the message: its send span's, not the stored one as well.
        message = messages[f"traced-{key}-{run}"]
        assert [value for name, value in message.header_list if name == "traceparent"] == [traceparent(send)]
    untraced = sends[str(OutboxEvent.objects.get(key=f"untraced-{run}").event_id)]
    assert ids(untraced.parent) == ids(batch.context)  # no trace of its own: the batch's
    assert len(batch.links) == 2
