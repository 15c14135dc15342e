"""core.otlp writes the very request the SDK's OTLP encoder builds, and the exporter sends it."""

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from core import otlp
from tests.otlp import receiver


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _provider(kept: _Keep, resource: Resource, limits: SpanLimits | None = None) -> TracerProvider:
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider


def _parsed(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def _sdk(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return _parsed(sdk_encode_spans(spans).SerializePartialToString())


REMOTE = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "opaque"), ("other", "x1")]),
)


def every_kind_of_span() -> list[ReadableSpan]:
    """Spans of two resources and three scopes with every field the encoders write, in mixed order."""
    kept = _Keep()
    web = _provider(kept, Resource.create({"service.name": "web", "service.instance.id": "h:1", "pid": 7}))
    worker = _provider(
        kept,
        Resource({"service.name": "worker", "ratio": 0.25, "flags": [True, False]}, schema_url="https://s/1.0"),
        SpanLimits(max_span_attributes=3, max_events=1, max_links=1, max_event_attributes=1, max_link_attributes=1),
    )
    platform = web.get_tracer("lottery")
    psycopg = web.get_tracer(
        "opentelemetry.instrumentation.psycopg", "0.66b1", schema_url="https://s/1.11", attributes={"lib": "pg"}
    )
    tasks = worker.get_tracer("celery")
    remote_parent = set_span_in_context(NonRecordingSpan(REMOTE))
    local = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with platform.start_as_current_span(
        "POST lotteries/<int:lottery_id>/ballots",
        context=remote_parent,
        kind=SpanKind.SERVER,
        links=[Link(REMOTE, {"link.kind": "caller", "service.name": "web"}), Link(local)],  # as on the resource
        attributes={
            "text": "é and \u2603 and \x00",
            "empty": "",
            "yes": True,
            "no": False,
            "zero": 0,
            "negative": -5,
            "int64 max": 2**63 - 1,
            "int64 min": -(2**63),
            "float": 1.5,
            "negative float": -0.0,
            "texts": ("a", "", "c"),
            "ints": [1, -2, 3],
            "floats": [0.5],
            "bools": [True],
            "none of them": [],
        },
    ) as request:
        request.add_event("something", {"count": 3, "why": "because", "yes": True})  # "yes" as on the span
        request.add_event("bare")
        with psycopg.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}):
            pass
        with psycopg.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}):
            pass
        with platform.start_as_current_span("ballot submit", kind=SpanKind.INTERNAL) as inner:
            inner.set_status(Status(StatusCode.ERROR, "refused: lottery_closed"))
        with platform.start_as_current_span("ok", kind=SpanKind.PRODUCER) as ok:
            ok.set_status(Status(StatusCode.OK))
        request.set_attribute("too big for int64", 2**70)  # the SDK's encoder logs it and leaves it out
    with tasks.start_as_current_span(
        "run draw",
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"a": 1, "b": 2}), Link(local)],  # one link and one of its attributes kept
        attributes={"one": 1, "two": 2, "three": 3, "four": 4},  # three kept, one dropped
    ) as task:
        task.add_event("first", {"x": 1, "y": 2})
        task.add_event("second")  # dropped: one event at most
    with platform.start_as_current_span(""):  # no name: nothing written for it
        pass
    return kept.spans


def test_the_direct_encoding_is_the_sdk_encoders_request(caplog: pytest.LogCaptureFixture) -> None:
    spans = every_kind_of_span()
    assert {span.resource.attributes["service.name"] for span in spans} == {"web", "worker"}
    assert any(span.dropped_attributes and span.dropped_events and span.dropped_links for span in spans)
    with caplog.at_level(logging.ERROR):
        sdk = _sdk(spans)
        direct = _parsed(otlp.encode_spans(spans))
    assert direct == sdk
    assert [rs.resource for rs in direct.resource_spans] == [rs.resource for rs in sdk.resource_spans]
    request = next(s for rs in direct.resource_spans for ss in rs.scope_spans for s in ss.spans if s.links)
    assert [kv.key for kv in request.attributes][-1] == "none of them"  # the int beyond int64 left out, as the SDK does
    assert "too big for int64" in caplog.text


def test_repeated_encodings_agree_whatever_the_caches_hold() -> None:
    spans = every_kind_of_span()
    first = otlp.encode_spans(spans)
    assert otlp.encode_spans(spans) == first  # from the caches
    otlp._attributes.clear()
    otlp._headers.clear()
    assert otlp.encode_spans(spans) == first
    # one span per request, in the reverse order: each request is the SDK's for the same spans
    for span in reversed(spans):
        assert _parsed(otlp.encode_spans([span])) == _sdk([span])
    assert otlp.encode_spans([]) == b""


def test_the_otlp_exporter_sends_the_direct_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_exporter, "encode_spans", sdk_encode_spans)  # the SDK's again after the test
    assert otlp.use_in_exporter()
    spans = every_kind_of_span()
    with receiver() as collector:
        exporter = OTLPSpanExporter(endpoint=f"{collector.endpoint}/v1/traces")
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    assert collector.bodies == [otlp.encode_spans(spans)]
    assert _parsed(collector.bodies[0]) == _sdk(spans)
    assert sorted(span.name for span in collector.all()) == sorted(span.name for span in spans)


CONTEXT = SpanContext(trace_id=7, span_id=8, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def test_values_that_compare_equal_keep_their_own_encoding() -> None:
    for first, second in ((0.0, -0.0), (-0.0, 0.0), (1, True), (True, 1), (1, 1.0)):
        spans = [
            ReadableSpan("a", CONTEXT, attributes={"v": first}),
            ReadableSpan("b", CONTEXT, attributes={"v": second}),
        ]
        assert _parsed(otlp.encode_spans(spans[:1])) == _sdk(spans[:1])
        assert _parsed(otlp.encode_spans(spans[1:])) == _sdk(spans[1:]), (first, second)


def test_resources_and_scopes_group_as_the_sdk_groups_them() -> None:
    # Equal resources that hash apart (1 and 1.0 in their attributes) stay apart, as in the SDK's dict.
    apart = [
        ReadableSpan("x", CONTEXT, resource=Resource({"n": 1})),
        ReadableSpan("y", CONTEXT, resource=Resource({"n": 1.0})),
    ]
    assert _parsed(otlp.encode_spans(apart)) == _sdk(apart)
    assert len(_parsed(otlp.encode_spans(apart)).resource_spans) == 2
    # Two providers of one resource, their spans alternating: one group, in the order met.
    kept = _Keep()
    resource = Resource.create({"service.name": "web"})
    first, second = _provider(kept, resource), _provider(kept, resource)
    for provider in (first, second, first, second):
        with provider.get_tracer("lottery").start_as_current_span("step"):
            pass
    assert _parsed(otlp.encode_spans(kept.spans)) == _sdk(kept.spans)


def test_a_value_nested_too_deep_is_left_out_and_the_batch_kept(caplog: pytest.LogCaptureFixture) -> None:
    for levels in (40, 400):
        deep: Any = 1
        for _ in range(levels):
            deep = (deep,)
        spans = [ReadableSpan("deep", CONTEXT, attributes={"deep": deep, "kept": "yes"}), ReadableSpan("ok", CONTEXT)]
        with caplog.at_level(logging.ERROR, logger="core.otlp"):
            request = _parsed(otlp.encode_spans(spans))
        encoded = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        assert [span.name for span in encoded] == ["deep", "ok"]
        assert [kv.key for kv in encoded[0].attributes] == ["kept"]
        assert "Failed to encode key deep" in caplog.text


def test_a_batch_it_cannot_encode_goes_the_sdks_way(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(trace_exporter, "encode_spans", sdk_encode_spans)
    assert otlp.use_in_exporter()
    spans = every_kind_of_span()

    def broken(span: ReadableSpan) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(otlp, "_span", broken)
    with caplog.at_level(logging.ERROR, logger="core.otlp"):
        body = otlp.EncodedRequest(spans).SerializePartialToString()
    assert _parsed(body) == _sdk(spans)
    assert "the SDK's encoder does" in caplog.text
