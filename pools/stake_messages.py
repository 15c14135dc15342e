"""The ``player.stakeCreated`` message: parsing and validation, pure (no database).

Value: ``{"stakeId", "playerId", "gameId", "amount", "currency", "occurredAt"}``.
Anything else is refused with a stable reason, which becomes the dead
letter's ``error`` header: ``unexpected_message_type``, ``invalid_json``,
``missing_field``, ``invalid_field``, ``invalid_amount``, ``unknown_currency``.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core import currencies

MESSAGE_TYPE = "player.stakeCreated"
FIELDS = ("stakeId", "playerId", "gameId", "amount", "currency", "occurredAt")
MAX_ID_LENGTH = 100
TRACEPARENT_LENGTH = 55  # W3C trace context, version 00
# A stake beyond this is not a bet but a mistake; it also keeps pots within their column.
MAX_AMOUNT = Decimal("1e9")
# Built once: json.loads(parse_float=...) would build a decoder per message.
_DECODER = json.JSONDecoder(parse_float=Decimal)


class StakeRefused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stake_id: str | None = None  # the message's stakeId, when it had a readable one


@dataclass(frozen=True)
class StakeMessage:
    """A stake, the one shape it keeps from the Kafka record to its pool.

    ``player_external_id`` is the message's ``playerId``, the game service's
    id for the player; ``player_id`` is our database key for that player,
    known once the consumer found (or created) them (``dataclasses.replace``).
    """

    stake_id: str
    player_external_id: str
    game_id: str
    amount: Decimal
    currency: str
    occurred_at: datetime
    player_id: int | None = None
    # The trace the stake belongs to: its message's W3C traceparent header (with tracing on, the
    # consumer's span of it). Kept on the stake, so the pool it fills later can link to it.
    traceparent: str = ""


def parse_stake(value: bytes | None, headers: dict[str, bytes | None]) -> StakeMessage:
    """The stake in a Kafka record, or ``StakeRefused`` saying what is wrong with it.

    Never raises anything else: whatever a producer sends, the consumer must
    be able to dead-letter it and move on.
    """
    try:
        return _parse(value, headers)
    except StakeRefused:
        raise
    except (ValueError, ArithmeticError, RecursionError, TypeError, OverflowError) as error:
        raise StakeRefused("invalid_json", f"the value cannot be read: {type(error).__name__}") from None


def _parse(value: bytes | None, headers: dict[str, bytes | None]) -> StakeMessage:
    message_type = headers.get("messageType")
    if message_type is not None and message_type != MESSAGE_TYPE.encode():
        raise StakeRefused("unexpected_message_type", f"messageType {message_type!r} is not {MESSAGE_TYPE!r}")
    try:
        raw = value or b""
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StakeRefused("invalid_json", f"the value is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise StakeRefused("invalid_json", "the value is not a JSON object")
    try:
        return _stake(body, headers)
    except StakeRefused as refused:
        refused.stake_id = _readable_identifier(body, "stakeId")  # to name the dead letter in the log
        raise


def _stake(body: dict[str, Any], headers: dict[str, bytes | None]) -> StakeMessage:
    missing = [name for name in FIELDS if body.get(name) in (None, "")]
    if missing:
        raise StakeRefused("missing_field", f"missing: {', '.join(missing)}")
    currency = _text(body, "currency").upper()
    if not currencies.is_known(currency):
        raise StakeRefused("unknown_currency", f"currency {currency!r} is not supported")
    return StakeMessage(
        stake_id=_identifier(body, "stakeId"),
        player_external_id=_identifier(body, "playerId"),
        game_id=_identifier(body, "gameId"),
        amount=_amount(body["amount"], currency),
        currency=currency,
        occurred_at=_moment(body["occurredAt"]),
        traceparent=_traceparent(headers.get("traceparent")),
    )


def _traceparent(raw: bytes | None) -> str:
    """The header if it has a traceparent's shape (version-trace-parent-flags, 55 characters), else nothing."""
    if raw is None or len(raw) != TRACEPARENT_LENGTH:
        return ""
    text = raw.decode("ascii", errors="replace")
    return text if text.count("-") == 3 and text.isprintable() else ""


def _text(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise StakeRefused("invalid_field", f"{name} must be a string")
    return value.strip()


def _identifier(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise StakeRefused("invalid_field", f"{name} must be a string or an integer")
    text = value.strip() if isinstance(value, str) else str(value) if abs(value) < 10**MAX_ID_LENGTH else ""
    if not text or len(text) > MAX_ID_LENGTH:
        raise StakeRefused("invalid_field", f"{name} must have 1 to {MAX_ID_LENGTH} characters")
    if not text.isprintable():
        raise StakeRefused("invalid_field", f"{name} must not contain control characters")
    return text


def _readable_identifier(body: dict[str, Any], name: str) -> str | None:
    try:
        return _identifier(body, name) if body.get(name) not in (None, "") else None
    except StakeRefused:
        return None


def _amount(raw: Any, currency: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise StakeRefused("invalid_amount", "amount must be a decimal number or string")
    shown = str(raw)[:40]
    try:
        amount = Decimal(str(raw).strip())
        if not amount.is_finite() or amount <= 0:
            raise StakeRefused("invalid_amount", f"amount {shown!r} must be a positive number")
        if amount >= MAX_AMOUNT or amount != amount.quantize(currencies.quantum(currency)):
            raise StakeRefused("invalid_amount", f"amount {shown!r} is not a valid amount of {currency}")
    except (InvalidOperation, ValueError):
        raise StakeRefused("invalid_amount", f"amount {shown!r} is not a decimal number") from None
    return amount


def _moment(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise StakeRefused("invalid_field", "occurredAt must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise StakeRefused("invalid_field", f"occurredAt {raw!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise StakeRefused("invalid_field", "occurredAt must carry a time zone offset")
    try:
        # Stored in UTC: a time that leaves years 1 to 9999 there could be written but never read back.
        moment.astimezone(UTC)
    except OverflowError:
        raise StakeRefused("invalid_field", f"occurredAt {raw!r} is out of range") from None
    return moment
