"""A test receiver for OTLP over HTTP: the spans that real processes export, decoded with opentelemetry-proto."""

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str  # 32 hex digits, as in a traceparent
    span_id: str  # 16 hex digits
    parent_id: str  # "" for a root
    name: str
    kind: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each linked span
    status: int  # 0 unset, 1 ok, 2 error
    start_ns: int = field(compare=False)

    def is_named_by(self, traceparent: str) -> bool:
        """Whether a W3C traceparent header names this span (in a sampled trace)."""
        version, trace_id, span_id, flags = traceparent.split("-")
        return (version, trace_id, span_id) == ("00", self.trace_id, self.span_id) and int(flags, 16) & 1 == 1

    def __repr__(self) -> str:  # short enough to read in a failed assertion
        parent = f" <- {self.parent_id}" if self.parent_id else " (root)"
        return f"<{self.service}: {self.name} [{self.kind}] {self.trace_id[:8]}/{self.span_id}{parent}>"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def decode(body: bytes) -> list[Span]:
    """The spans of one ``ExportTraceServiceRequest``, each with its resource's ``service.name``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        service=resource.get("service.name", ""),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=KINDS[span.kind],
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        status=span.status.code,
                        start_ns=span.start_time_unix_nano,
                    )
                )
    return spans


class Receiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 (``endpoint``, the value of OTEL_EXPORTER_OTLP_ENDPOINT)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.bodies: list[bytes] = []  # each request as it came (decompressed)
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                spans = decode(body)
                with receiver._lock:
                    receiver.spans.extend(spans)
                    receiver.bodies.append(body)
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def all(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[Span]:
        return sorted((s for s in self.all() if s.trace_id == trace_id), key=lambda s: s.start_ns)

    def wait_for(self, find: Callable[[list[Span]], Any], timeout: float = 30, what: str = "spans") -> Any:
        """Poll until ``find(spans)`` returns something true; return it. Fails naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            found = find(self.all())
            if found:
                return found
            assert time.monotonic() < deadline, f"no {what} within {timeout} s; received {len(self.all())} spans"
            time.sleep(0.1)


@contextmanager
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    try:
        yield running
    finally:
        running.stop()
