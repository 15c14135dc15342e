"""Traces: OpenTelemetry set up once per process, and the few helpers the services use.

``setup(service)`` is called by ``core.process.started`` after the process's
fork (never before: an exporter's thread does not survive a fork). With
``OTEL_ENABLED`` it installs a tracer provider named after the process
(``service.name``: web, worker, beat, relay, consumer, cli), the OTLP/HTTP
exporter (or one JSON line per span to a file or stderr when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is unset) and the contrib instrumentations:
Django (``/metrics`` and ``/health/*`` left out), Celery (the trace travels
in each task's headers), psycopg, redis and kafka-python (a span per send,
which injects that span's ``traceparent`` into the message's headers).

Sampling is parent-based with a ratio (``OTEL_TRACES_SAMPLE_RATIO``) for new
traces: a trace is kept or dropped whole, in every process it reaches. A
database or Redis call outside any operation (a relay's or consumer's poll,
the workers' own housekeeping) starts no trace, nor does beat's queueing of
the sweeps registered in ``QUIET_TASKS``.

A request's own trace headers are not trusted (``inbound_context_guard``,
around web's WSGI application): the request starts a trace of its own,
sampled by the ratio, and links the caller's span, so that a client on the
internet can neither pick the trace id its lines are logged under nor switch
sampling on for itself. ``OTEL_TRUST_INBOUND_CONTEXT`` continues the caller's
trace instead, behind a gateway that sets or vets those headers. Celery's
task headers and Kafka's message headers are always continued: only the
platform and the services the broker lets produce stakes write them.

Tracing off (the default, and the tests), every helper below costs next to
nothing: no span is made and the current context is left as it is.

Spans carry the domain's ids under one set of names: ``lottery.id``,
``ballot.id``, ``draw.id``, ``award.id``, ``stake.id``, ``event.id`` (and
``event.type``), ``notification.id``.
"""

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

LOTTERY_ID = "lottery.id"
BALLOT_ID = "ballot.id"
DRAW_ID = "draw.id"
AWARD_ID = "award.id"
STAKE_ID = "stake.id"
EVENT_ID = "event.id"
EVENT_TYPE = "event.type"
NOTIFICATION_ID = "notification.id"
MAX_IDS = 100  # ids named on one span of a batch (the first ones); its count says how many
MAX_LINKS = 128  # links of one span (the SDK's own limit): a batch links to its first messages

# Beat's sweeps that run every few seconds: beat queueing one starts no trace (a task
# queued by a request or another task still carries that one's). Apps add their task names
# in their AppConfig.ready.
QUIET_TASKS: set[str] = set()

INSTRUMENTATIONS = ("django", "celery", "psycopg", "redis", "kafka")  # OTEL_PYTHON_DISABLED_INSTRUMENTATIONS' names
_EXCLUDED_URLS = r"^https?://[^/]+/metrics/?(\?.*)?$,^https?://[^/]+/health/"

_enabled = False
_kafka_injects = False  # the kafka-python instrumentation writes traceparent into every message it sends
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None
_NOTHING: contextlib.nullcontext[Span] = contextlib.nullcontext(INVALID_SPAN)


def enabled() -> bool:
    return _enabled


def kafka_injects() -> bool:
    """Whether a send writes its own span's ``traceparent`` (then stored ones must not be sent as well)."""
    return _kafka_injects


# --- Set-up --------------------------------------------------------------------


def setup(service: str) -> bool:
    """Trace this process as ``service`` if ``OTEL_ENABLED``; returns whether it does. Once per process."""
    from django.conf import settings

    if _enabled or not settings.OTEL_ENABLED:
        return _enabled
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "lottery",
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource, sampler=sampler(settings.OTEL_TRACES_SAMPLE_RATIO))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(provider)
    install(
        provider,
        instrument=[name for name in INSTRUMENTATIONS if name not in settings.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS],
    )
    from celery.signals import worker_process_shutdown

    # A prefork child leaves with os._exit, past atexit: send what is buffered first.
    worker_process_shutdown.connect(_flush_at_exit, weak=False)
    logger.info(
        "tracing on as %s: %s, sampling %s of new traces",
        service,
        settings.OTEL_EXPORTER_OTLP_ENDPOINT or settings.OTEL_TRACES_FILE or "stderr",
        settings.OTEL_TRACES_SAMPLE_RATIO,
    )
    return True


def _exporter(settings: Any) -> Any:
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from core import otlp

        if not otlp.use_in_exporter():  # the same request, written straight into bytes (core.otlp)
            logger.warning("the OTLP exporter's encoder is not where core.otlp expects it: spans encoded the SDK's way")
        return OTLPSpanExporter(endpoint=f"{settings.OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces")
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    out: IO[str] = open(settings.OTEL_TRACES_FILE, "a", buffering=1) if settings.OTEL_TRACES_FILE else sys.stderr  # noqa: SIM115 (the process's)
    return ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")


def install(provider: Any, *, instrument: Iterable[str] = INSTRUMENTATIONS) -> None:
    """Use ``provider`` for the platform's spans and turn the instrumentations on (``setup``, or a test)."""
    global _enabled, _kafka_injects, _tracer, _provider
    wanted = set(instrument)
    if "django" in wanted:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(
            tracer_provider=provider, excluded_urls=_EXCLUDED_URLS, request_hook=_link_the_caller
        )
    if "celery" in wanted:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    if "psycopg" in wanted:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument(tracer_provider=provider)
    if "redis" in wanted:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().instrument(tracer_provider=provider)
    if "kafka" in wanted:
        from opentelemetry.instrumentation.kafka import KafkaInstrumentor

        kafka_instrumentor = KafkaInstrumentor()
        # Checks the installed kafka-python against the versions it supports, and declines otherwise.
        kafka_instrumentor.instrument(tracer_provider=provider, produce_hook=_on_send)
        _kafka_injects = kafka_instrumentor.is_instrumented_by_opentelemetry
        if not _kafka_injects:
            logger.error("kafka-python is not instrumented (unsupported version?): sends carry no span of their own")
    _tracer = provider.get_tracer("lottery")
    _provider = provider
    _enabled = True


def uninstall() -> None:
    """Undo ``install`` (the tests, which share one process)."""
    global _enabled, _kafka_injects, _tracer, _provider
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.kafka import KafkaInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (
        DjangoInstrumentor(),
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
        PsycopgInstrumentor(),
        RedisInstrumentor(),
        KafkaInstrumentor(),
    ):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    _enabled, _kafka_injects, _tracer, _provider = False, False, trace.NoOpTracer(), None


def _flush_at_exit(**kwargs: Any) -> None:
    if _provider is not None:
        _provider.shutdown()


# --- A caller's trace headers -------------------------------------------------------

CALLER_TRACEPARENT = "lottery.caller_traceparent"  # WSGI environ: the caller's traceparent, held back
_W3C = TraceContextTextMapPropagator()  # reads the held-back traceparent, whatever propagators are configured


def inbound_context_guard(application: Any) -> Any:
    """Web's WSGI application, with the caller's trace headers held back (unless ``OTEL_TRUST_INBOUND_CONTEXT``).

    The Django instrumentation would continue the trace they name, with the
    caller's trace id and its sampled flag. Held back, the request starts its
    own trace; its span links the caller's (``_link_the_caller``).
    """
    from django.conf import settings

    if settings.OTEL_TRUST_INBOUND_CONTEXT:
        return application
    # Every header the configured propagators read (traceparent, tracestate, baggage; b3's, if set up), as WSGI names.
    held_back = {"HTTP_" + name.upper().replace("-", "_") for name in propagate.get_global_textmap().fields}

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        traceparent = environ.get("HTTP_TRACEPARENT")
        for name in held_back:
            environ.pop(name, None)
        if traceparent:
            environ[CALLER_TRACEPARENT] = traceparent
        return application(environ, start_response)

    return guarded


def _link_the_caller(span: Span, request: Any) -> None:
    """The Django instrumentation's request hook: the request's span links the caller's span, if it named one."""
    traceparent = request.META.get(CALLER_TRACEPARENT)
    if not traceparent or not span.is_recording():
        return
    caller = trace.get_current_span(_W3C.extract({"traceparent": traceparent}))
    if caller.get_span_context().is_valid:
        span.add_link(caller.get_span_context(), {"link.kind": "caller"})


def sampler(ratio: float) -> Any:
    """Parent-based; a new trace is kept with probability ``ratio``, unless it is a stray call or a quiet sweep."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    class _NewTraces(Sampler):
        def __init__(self) -> None:
            self.ratio = TraceIdRatioBased(ratio)

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            # A query or a Redis command with no operation around it is housekeeping.
            if kind == SpanKind.CLIENT or (
                kind == SpanKind.PRODUCER and name.startswith("apply_async/") and name[12:] in QUIET_TASKS
            ):
                return SamplingResult(Decision.DROP)
            return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"NewTraces{{{self.ratio.get_description()}}}"

    return ParentBased(root=_NewTraces())


def _on_send(span: Span, args: Any, kwargs: Any) -> None:
    """The kafka-python instrumentation's hook: an outbox event's id and type on its send span."""
    if not span.is_recording():
        return
    headers = kwargs.get("headers") if len(args) < 4 else args[3]
    for name, value in headers or ():
        if name == "event-id" and value:
            span.set_attribute(EVENT_ID, value.decode())
        elif name == "messageType" and value:
            span.set_attribute(EVENT_TYPE, value.decode())


# --- Helpers for the services -----------------------------------------------------


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    links: Sequence[Link] = (),
) -> contextlib.AbstractContextManager[Span]:
    """A span made current for the ``with`` block (a child of ``context``, else of the current span)."""
    if not _enabled:
        return _NOTHING
    return _tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes, links=links)


def start_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    links: Sequence[Link] = (),
) -> Span:
    """A span that is not made current; the caller ends it."""
    if not _enabled:
        return INVALID_SPAN
    return _tracer.start_span(name, context=context, kind=kind, attributes=attributes, links=links)


def new_trace() -> Context:
    """An empty context: a span started in it is the root of a trace of its own."""
    return Context()


def context_from(carrier: Mapping[str, str] | None) -> Context | None:
    """The trace context written in ``carrier`` (stored headers, ``{"traceparent": ...}``), or ``None``."""
    if not carrier or "traceparent" not in carrier:
        return None
    return propagate.extract(carrier)


def context_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Context | None:
    """The trace context of a Kafka message's headers, or ``None``."""
    for name, value in headers or ():
        if name == "traceparent" and value:
            return propagate.extract({"traceparent": value.decode(errors="replace")})
    return None


def context_of(span_: Span) -> Context:
    return trace.set_span_in_context(span_)


def link(context: Context | None) -> list[Link]:
    """A link to the span of ``context`` (none for no context)."""
    if context is None:
        return []
    span_context = trace.get_current_span(context).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def links(contexts: Iterable[Context | None]) -> list[Link]:
    return [found for context in contexts for found in link(context)]


@contextlib.contextmanager
def attached(context: Context | None) -> Iterator[None]:
    """Make ``context`` current for the ``with`` block (nothing for ``None``)."""
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def carrier(context: Context | None = None) -> dict[str, str]:
    """The W3C headers (``traceparent``) of ``context``, or of the current span; empty without a trace."""
    found: dict[str, str] = {}
    propagate.inject(found, context=context)
    return found


def traceparent(context: Context | None = None) -> str:
    return carrier(context).get("traceparent", "")


def kafka_trace_headers() -> list[tuple[str, bytes]]:
    """The current trace's W3C headers for a message sent now, when no instrumentation writes them itself."""
    if not _enabled or _kafka_injects:
        return []
    return [(name, value.encode()) for name, value in carrier().items()]


def without_trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Stored headers less the ones a send writes itself (with the kafka-python instrumentation on)."""
    if not _kafka_injects:
        return dict(headers)
    fields = propagate.get_global_textmap().fields
    return {name: value for name, value in headers.items() if name not in fields}


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add domain ids to the current span."""
    if _enabled:
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes(attributes)
