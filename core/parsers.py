"""The API's JSON parser: a body is checked against every limit before ``json`` parses it.

``json.loads`` recurses once per nested array or object, so a body of a
thousand ``[`` exhausts the interpreter's stack; it also turns ``1e999999``
into infinity, accepts ``NaN`` and keeps the last of two duplicate keys. This
parser first scans the body's tokens with one regular expression, counting
nesting depth, keys and items, and the length of each number, and refuses the
body at the first limit passed. Only a body within every limit is parsed,
strictly: no ``NaN`` or ``Infinity``, no number beyond a float's range, no
duplicate key. Each refusal is a ``malformed_request`` whose details say why
(``{"limit": "depth", "max": 32}``, ``{"reason": "duplicate_key", ...}``).

Limits, from settings: ``API_JSON_MAX_DEPTH``, ``API_JSON_MAX_KEYS`` (object
keys and array items in the whole body), ``API_JSON_MAX_NUMBER_LENGTH``
(characters of one number), and ``DATA_UPLOAD_MAX_MEMORY_SIZE`` for the body
itself (413 ``request_too_large``).
"""

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers

from core.errors import MalformedRequest, RequestTooLarge

# One JSON token after optional whitespace. Strings use the unrolled form
# (no alternation inside the repetition), so a long string is one fast match.
_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
      (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<open>[\[{])
    | (?P<close>[\]}])
    | (?P<comma>,)
    | (?P<colon>:)
    | (?P<literal>true|false|null)
    )""",
    re.VERBOSE,
)
_NON_FINITE = ("NaN", "Infinity", "-Infinity")
_VALUE_TOKENS = frozenset({"string", "number", "literal", "open"})
_KEY_SHOWN = 64  # characters of a duplicate key echoed in the error


def _limit(name: str, maximum: int, message: str) -> MalformedRequest:
    return MalformedRequest(message, details={"limit": name, "max": maximum})


def _syntax(position: int) -> MalformedRequest:
    return MalformedRequest(
        f"The body is not valid JSON (unexpected token at position {position}).", details={"reason": "syntax"}
    )


def scan(text: str, *, max_depth: int, max_keys: int, max_number_length: int) -> None:
    """Refuse ``text`` if it passes a limit or its tokens cannot be JSON; parse nothing.

    Only the order of values and separators is checked (a value never follows
    a value, a separator always does), which is enough to bound the loop: it
    stops at the first refusal, after at most a few times ``max_keys`` tokens
    whatever the body. ``json`` finds any other mistake afterwards, in a body
    already known to be shallow and small.
    """
    stack: list[str] = []  # the open containers, "{" or "["
    expect_key = False  # the next value is an object's key
    after_value = False  # the last token ended a value
    keys = 0
    position = 0
    while (match := _TOKEN.match(text, position)) is not None:
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        start = match.start(kind)
        if kind in _VALUE_TOKENS:
            if after_value:
                raise _syntax(start)
            if stack and (stack[-1] == "[" or expect_key):
                keys += 1
                if keys > max_keys:
                    raise _limit("keys", max_keys, f"The body has more than {max_keys} keys and items.")
            expect_key = False
            after_value = kind != "open"
            if kind == "open":
                if len(stack) >= max_depth:
                    raise _limit("depth", max_depth, f"The body nests arrays and objects deeper than {max_depth}.")
                stack.append(match.group(kind))
                expect_key = stack[-1] == "{"
            elif kind == "number" and position - start > max_number_length:
                raise _limit(
                    "number_length",
                    max_number_length,
                    f"A number in the body is longer than {max_number_length} characters.",
                )
        elif kind == "close":
            if not stack:
                raise _syntax(start)
            stack.pop()
            expect_key, after_value = False, True
        else:  # a comma or a colon
            if not stack or not after_value:
                raise _syntax(start)
            expect_key, after_value = kind == "comma" and stack[-1] == "{", False
    rest = text[position:].lstrip(" \t\n\r")
    if rest.startswith(_NON_FINITE):
        raise MalformedRequest("NaN and Infinity are not JSON numbers.", details={"reason": "non_finite_number"})
    if rest:
        raise _syntax(len(text) - len(rest))


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedRequest(
                "A key appears twice in one object.", details={"reason": "duplicate_key", "key": key[:_KEY_SHOWN]}
            )
        result[key] = value
    return result


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise MalformedRequest(
            "A number in the body is beyond the range of a double.", details={"reason": "number_out_of_range"}
        )
    return value


def _no_constant(literal: str) -> Any:
    raise MalformedRequest("NaN and Infinity are not JSON numbers.", details={"reason": "non_finite_number"})


def loads(text: str, *, max_depth: int, max_keys: int, max_number_length: int) -> Any:
    """Parse ``text`` as strict JSON after ``scan`` has found it within the limits."""
    scan(text, max_depth=max_depth, max_keys=max_keys, max_number_length=max_number_length)
    try:
        return json.loads(text, object_pairs_hook=_object, parse_float=_finite_float, parse_constant=_no_constant)
    except ValueError as error:  # JSONDecodeError; the scan leaves no int too long for int()
        raise MalformedRequest(f"The body is not valid JSON: {error}.", details={"reason": "syntax"}) from None


def _encoding(parser_context: Mapping[str, Any]) -> str:
    """The body's charset (Content-Type), if it is a text encoding: a codec like bz2 would expand the body."""
    encoding: str = parser_context.get("encoding") or settings.DEFAULT_CHARSET
    try:
        "".encode(encoding)
    except (LookupError, UnicodeError):
        raise MalformedRequest(
            f"The charset {encoding[:40]!r} is not a text encoding.", details={"reason": "charset"}
        ) from None
    return encoding


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the limits above (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        encoding = _encoding(parser_context or {})
        max_size: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if max_size is None else stream.read(max_size + 1)
        if max_size is not None and len(raw) > max_size:
            raise RequestTooLarge(details={"max_bytes": max_size})
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as error:
            raise MalformedRequest(
                f"The body is not valid {encoding}: {error.reason} at byte {error.start}.",
                details={"reason": "encoding", "encoding": encoding},
            ) from None
        return loads(
            text,
            max_depth=settings.API_JSON_MAX_DEPTH,
            max_keys=settings.API_JSON_MAX_KEYS,
            max_number_length=settings.API_JSON_MAX_NUMBER_LENGTH,
        )
