"""Spans to OTLP protobuf bytes, written directly: what the OTLP/HTTP exporter sends, in under half its time.

The exporter of ``opentelemetry-exporter-otlp-proto-http`` builds a protobuf
object for every span, attribute and value (``encode_spans``), then
serialises them: about 40 microseconds a span here, in the web worker's
process, a dozen spans per ballot. ``encode_spans`` below writes the same
``ExportTraceServiceRequest`` straight into bytes, field by field
(https://protobuf.dev/programming-guides/encoding/), and keeps the encoding
of what repeats (the resource, the scopes, attribute pairs such as
``db.system=postgresql`` or a statement's text) in bounded caches. What it
writes parses, with ``opentelemetry-proto``, into the very message that
``encode_spans`` of the SDK's encoder builds: ``tests/core/test_otlp.py``
compares the two over every kind of field.

Where the two differ, on purpose: an array or map nested more than 32 levels
deep is left out (logged), where the SDK's encoder drops it or, deeper,
fails the whole batch; and a batch this module cannot encode is encoded by the
SDK's encoder (logged) rather than lost.

``use_in_exporter`` makes the SDK's OTLP/HTTP exporter send these bytes; its
settings, retries, transport and self-metrics stay the SDK's.
"""

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

logger = logging.getLogger(__name__)

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 as two's complement: ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack

# ExportTraceServiceRequest.resource_spans; ResourceSpans: resource, scope_spans, schema_url.
_REQUEST_RESOURCE_SPANS = _tag(1, _LEN)
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_SPANS_SCHEMA = (
    _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
)  # fmt: skip
_RESOURCE_ATTRIBUTE = _tag(1, _LEN)
# ScopeSpans: scope, spans, schema_url; InstrumentationScope: name, version, attributes.
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPAN, _SCOPE_SPANS_SCHEMA = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTE = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
# Span.
_SPAN_TRACE_ID = _tag(1, _LEN) + _varint(16)
_SPAN_SPAN_ID = _tag(2, _LEN) + _varint(8)
_SPAN_TRACE_STATE = _tag(3, _LEN)
_SPAN_PARENT_ID = _tag(4, _LEN) + _varint(8)
_SPAN_NAME = _tag(5, _LEN)
_SPAN_KIND = _tag(6, _VARINT)
_SPAN_START = _tag(7, _I64)
_SPAN_END = _tag(8, _I64)
_SPAN_ATTRIBUTE = _tag(9, _LEN)
_SPAN_DROPPED_ATTRIBUTES = _tag(10, _VARINT)
_SPAN_EVENT = _tag(11, _LEN)
_SPAN_DROPPED_EVENTS = _tag(12, _VARINT)
_SPAN_LINK = _tag(13, _LEN)
_SPAN_DROPPED_LINKS = _tag(14, _VARINT)
_SPAN_STATUS = _tag(15, _LEN)
_SPAN_FLAGS = _tag(16, _I32)
# Span.Event: time_unix_nano, name, attributes, dropped_attributes_count.
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTE, _EVENT_DROPPED = (
    _tag(1, _I64),
    _tag(2, _LEN),
    _tag(3, _LEN),
    _tag(4, _VARINT),
)
# Span.Link: trace_id, span_id, attributes, dropped_attributes_count, flags (no trace_state: the SDK's
# encoder writes none).
_LINK_TRACE_ID = _tag(1, _LEN) + _varint(16)
_LINK_SPAN_ID = _tag(2, _LEN) + _varint(8)
_LINK_ATTRIBUTE, _LINK_DROPPED, _LINK_FLAGS = _tag(4, _LEN), _tag(5, _VARINT), _tag(6, _I32)
# Status: message (2), code (3).
_STATUS_MESSAGE, _STATUS_CODE = _tag(2, _LEN), _tag(3, _VARINT)
# KeyValue: key, value; AnyValue: string, bool, int, double, array, kvlist, bytes; ArrayValue/KeyValueList: values.
_KV_KEY, _KV_VALUE = _tag(1, _LEN), _tag(2, _LEN)
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE = _tag(1, _LEN), _tag(2, _VARINT), _tag(3, _VARINT), _tag(4, _I64)
_ANY_ARRAY, _ANY_KVLIST, _ANY_BYTES = _tag(5, _LEN), _tag(6, _LEN), _tag(7, _LEN)
_VALUES = _tag(1, _LEN)

# SpanKind to OTLP's enum (SPAN_KIND_INTERNAL is 1, ...); SpanFlags' "is remote is known" and "is remote" bits.
_KINDS = {
    SpanKind.INTERNAL: _SPAN_KIND + _varint(1),
    SpanKind.SERVER: _SPAN_KIND + _varint(2),
    SpanKind.CLIENT: _SPAN_KIND + _varint(3),
    SpanKind.PRODUCER: _SPAN_KIND + _varint(4),
    SpanKind.CONSUMER: _SPAN_KIND + _varint(5),
}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Arrays and maps nested deeper are left out (logged): past about 47 levels a request exceeds the nesting
# that protobuf parsers accept (100), where the SDK's encoder drops the attribute or fails the whole batch.
_MAX_NESTING = 32
_SPAN_FLAGS_LOCAL = _SPAN_FLAGS + _pack_fixed32(_HAS_IS_REMOTE)
_SPAN_FLAGS_REMOTE = _SPAN_FLAGS + _pack_fixed32(_HAS_IS_REMOTE | _IS_REMOTE)

# Encoded attribute fields (field tag, key, the value's type, value) -> bytes, for those that repeat; cleared when full.
_ATTRIBUTE_CACHE_SIZE = 4096
_attributes: dict[tuple[bytes, str, type, Any], bytes] = {}
# Encoded resources and scopes, by identity (a process has a few, living as long as it does); each entry holds
# its object, so that no other can take its id while it is cached.
_HEADER_CACHE_SIZE = 256
_headers: dict[tuple[str, int], tuple[Any, bytes]] = {}


def _cached_header(kind: str, obj: Any, encode: Callable[[Any], bytes]) -> bytes:
    cached = _headers.get((kind, id(obj)))
    if cached is not None and cached[0] is obj:
        return cached[1]
    encoded = encode(obj)
    if len(_headers) >= _HEADER_CACHE_SIZE:
        _headers.clear()
    _headers[(kind, id(obj))] = (obj, encoded)
    return encoded


def _any_value(value: Any, depth: int = 0) -> bytes:
    """An AnyValue's fields (the SDK's ``_encode_value``: None is the empty value)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _len_field(_ANY_STRING, value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} does not fit an int64")
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _len_field(_ANY_BYTES, value)
    if depth >= _MAX_NESTING:
        raise ValueError(f"nested more than {_MAX_NESTING} levels deep")
    if isinstance(value, Sequence):
        return _len_field(_ANY_ARRAY, b"".join(_len_field(_VALUES, _any_value(item, depth + 1)) for item in value))
    if isinstance(value, Mapping):
        return _len_field(
            _ANY_KVLIST, b"".join(_len_field(_VALUES, _key_value(str(k), v, depth + 1)) for k, v in value.items())
        )
    raise TypeError(f"invalid type {type(value)} of value {value!r}")


def _key_value(key: str, value: Any, depth: int = 0) -> bytes:
    return _len_field(_KV_KEY, key.encode()) + _len_field(_KV_VALUE, _any_value(value, depth))


def _attributes_of(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a KeyValue field under ``tag``; one that cannot be encoded is logged and left out,
    as the SDK's encoder does."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        # Not floats: 0.0 and -0.0 are one key of a dict, and two different encodings.
        cache_key = (tag, key, type(value), value) if isinstance(value, str | bool | int | bytes) else None
        encoded = _attributes.get(cache_key) if cache_key is not None else None
        if encoded is None:
            try:
                encoded = _len_field(tag, _key_value(key, value))
            except Exception as error:  # as the SDK's encoder: the attribute is left out, the span kept
                logger.exception("Failed to encode key %s: %s", key, error)
                continue
            if cache_key is not None:
                if len(_attributes) >= _ATTRIBUTE_CACHE_SIZE:
                    _attributes.clear()
                _attributes[cache_key] = encoded
        parts.append(encoded)
    return b"".join(parts)


def _scope_spans_header(scope: Any) -> bytes:
    """The ScopeSpans' ``scope`` field (and its schema_url), encoded once per scope."""
    return _cached_header("scope", scope, _encode_scope)


def _encode_scope(scope: Any) -> bytes:
    if scope is None:
        return _len_field(_SCOPE_SPANS_SCOPE, b"")
    fields = _len_field(_SCOPE_NAME, scope.name.encode()) if scope.name else b""
    if scope.version:
        fields += _len_field(_SCOPE_VERSION, scope.version.encode())
    fields += _attributes_of(_SCOPE_ATTRIBUTE, scope.attributes)
    encoded = _len_field(_SCOPE_SPANS_SCOPE, fields)
    if scope.schema_url:
        encoded += _len_field(_SCOPE_SPANS_SCHEMA, scope.schema_url.encode())
    return encoded


def _resource_header(resource: Any) -> bytes:
    """The ResourceSpans' ``resource`` field and its schema_url, encoded once per resource."""
    return _cached_header("resource", resource, _encode_resource)


def _encode_resource(resource: Any) -> bytes:
    encoded = _len_field(_RESOURCE_SPANS_RESOURCE, _attributes_of(_RESOURCE_ATTRIBUTE, resource.attributes))
    if resource.schema_url:
        encoded += _len_field(_RESOURCE_SPANS_SCHEMA, resource.schema_url.encode())
    return encoded


def _trace_state(trace_state: Any) -> str:
    return ",".join(f"{key}={value}" for key, value in trace_state.items()) if trace_state is not None else ""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    parts = [
        _SPAN_TRACE_ID,
        context.trace_id.to_bytes(16, "big"),
        _SPAN_SPAN_ID,
        context.span_id.to_bytes(8, "big"),
    ]
    state = _trace_state(context.trace_state)
    if state:
        parts.append(_len_field(_SPAN_TRACE_STATE, state.encode()))
    if parent is not None:
        parts += (_SPAN_PARENT_ID, parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_len_field(_SPAN_NAME, span.name.encode()))
    parts.append(_KINDS[span.kind])
    if span.start_time:
        parts += (_SPAN_START, _pack_fixed64(span.start_time))
    if span.end_time:
        parts += (_SPAN_END, _pack_fixed64(span.end_time))
    parts.append(_attributes_of(_SPAN_ATTRIBUTE, span.attributes))
    if span.dropped_attributes:
        parts += (_SPAN_DROPPED_ATTRIBUTES, _varint(span.dropped_attributes))
    for event in span.events:
        fields = _EVENT_TIME + _pack_fixed64(event.timestamp) if event.timestamp else b""
        if event.name:
            fields += _len_field(_EVENT_NAME, event.name.encode())
        fields += _attributes_of(_EVENT_ATTRIBUTE, event.attributes)
        if event.dropped_attributes:
            fields += _EVENT_DROPPED + _varint(event.dropped_attributes)
        parts.append(_len_field(_SPAN_EVENT, fields))
    if span.dropped_events:
        parts += (_SPAN_DROPPED_EVENTS, _varint(span.dropped_events))
    for link in span.links:
        linked = link.context
        fields = (
            _LINK_TRACE_ID + linked.trace_id.to_bytes(16, "big") + _LINK_SPAN_ID + linked.span_id.to_bytes(8, "big")
        )
        fields += _attributes_of(_LINK_ATTRIBUTE, link.attributes)
        if link.dropped_attributes:
            fields += _LINK_DROPPED + _varint(link.dropped_attributes)
        fields += _LINK_FLAGS + _pack_fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0))
        parts.append(_len_field(_SPAN_LINK, fields))
    if span.dropped_links:
        parts += (_SPAN_DROPPED_LINKS, _varint(span.dropped_links))
    status = span.status
    if status is not None:
        fields = _len_field(_STATUS_MESSAGE, status.description.encode()) if status.description else b""
        if status.status_code.value:
            fields += _STATUS_CODE + _varint(status.status_code.value)
        parts.append(_len_field(_SPAN_STATUS, fields))
    parts.append(_SPAN_FLAGS_REMOTE if parent is not None and parent.is_remote else _SPAN_FLAGS_LOCAL)
    return _len_field(_SCOPE_SPANS_SPAN, b"".join(parts))


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` of ``spans``: by resource, then by scope, in order met."""
    # Grouped as the SDK's encoder groups them, in dicts keyed by resource and by scope (hash and
    # equality), each distinct object looked up once: a Resource hashes by dumping its attributes to JSON.
    resources: dict[Any, dict[Any, list[bytes]]] = {}
    groups: dict[tuple[int, int], list[bytes]] = {}  # by the span's objects' identities (alive during the call)
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        group = groups.get((id(resource), id(scope)))
        if group is None:
            group = groups[(id(resource), id(scope))] = resources.setdefault(resource, {}).setdefault(scope, [])
        group.append(_span(span))
    request = []
    for resource, scopes in resources.items():
        scope_spans = b"".join(
            _len_field(_RESOURCE_SPANS_SCOPE_SPANS, _scope_spans_header(scope) + b"".join(encoded))
            for scope, encoded in scopes.items()
        )
        request.append(_len_field(_REQUEST_RESOURCE_SPANS, _resource_header(resource) + scope_spans))
    return b"".join(request)


class EncodedRequest:
    """What the SDK's exporter asks its encoder for: an object that serialises to the request's bytes.

    Should ``encode_spans`` fail on a batch, the SDK's encoder encodes it (logged), so that the
    spans are not lost for this module's sake.
    """

    sdk_encode_spans: Any = None  # the SDK's encoder, kept by ``use_in_exporter``

    def __init__(self, spans: Sequence[ReadableSpan]) -> None:
        self._spans = spans

    def SerializePartialToString(self) -> bytes:
        try:
            return encode_spans(self._spans)
        except Exception:
            if EncodedRequest.sdk_encode_spans is None:
                raise
            logger.exception("core.otlp could not encode a batch of %d spans; the SDK's encoder does", len(self._spans))
            encoded: bytes = EncodedRequest.sdk_encode_spans(self._spans).SerializePartialToString()
            return encoded

    SerializeToString = SerializePartialToString


def use_in_exporter() -> bool:
    """Make ``OTLPSpanExporter`` encode with ``encode_spans``; False (and the SDK's encoder) if it has changed."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    current = getattr(trace_exporter, "encode_spans", None)
    if current is EncodedRequest:
        return True
    if not callable(current):
        return False
    EncodedRequest.sdk_encode_spans = current
    trace_exporter.encode_spans = EncodedRequest  # type: ignore[attr-defined,assignment]
    return True
