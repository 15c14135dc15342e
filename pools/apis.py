"""The stake door's endpoint: POST /api/v1/stakes (staff, or the stakes token)."""

import re
import uuid
from collections import defaultdict
from typing import Any, ClassVar

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core import currencies
from core.errors import ApplicationError
from core.fields import Rfc3339DateTimeField, StrictCharField
from core.permissions import StaffOrInternalTokenApi
from core.schema import schema_component
from entries.models import Player
from pools.door import stake_produce
from pools.errors import BrokerUnavailable, InvalidStake
from pools.models import PRODUCE_STAKE
from pools.stake_messages import MAX_ID_LENGTH


def amount_pattern(minor_digits: int) -> str:
    """A positive amount below 1e9 with at most ``minor_digits`` decimals, as the stake consumer takes it."""
    whole = "[1-9][0-9]{0,8}"
    if minor_digits == 0:
        return f"^{whole}$"
    # below 1: "0." then at least one non-zero digit among the first minor_digits
    fractions = "|".join("0" * zeros + f"[1-9][0-9]{{0,{minor_digits - 1 - zeros}}}" for zeros in range(minor_digits))
    return f"^(?:{whole}(?:\\.[0-9]{{1,{minor_digits}}})?|0\\.(?:{fractions}))$"


IDENTIFIER_PATTERN = rf"^[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_ID_LENGTH - 2}}}[\x21-\x7e])?$"


def _identifier(**kwargs: Any) -> StrictCharField:
    """An id of 1 to 100 printable ASCII characters, no space at either end."""
    message = "Must be printable ASCII, without a space at either end."
    return StrictCharField(max_length=MAX_ID_LENGTH, validators=[RegexValidator(IDENTIFIER_PATTERN, message)], **kwargs)


class StakeInput(serializers.Serializer[dict[str, Any]]):
    """A ``player.stakeCreated`` as the game service sends it; stakeId and occurredAt are filled in if absent.

    A currency or amount the consumer would refuse is refused here with the
    consumer's own reason (400 ``invalid_stake``, ``details.reason``
    ``unknown_currency`` or ``invalid_amount``); the door takes the amount
    only in its documented form (at most the currency's decimals, no sign or
    exponent) and the currency as its ISO 4217 code, upper case.
    """

    stakeId = _identifier(required=False)
    playerId = _identifier()
    gameId = _identifier()
    amount = StrictCharField(
        max_length=40, help_text='A decimal string with at most the currency\'s minor digits, e.g. "5.00".'
    )
    currency = StrictCharField(help_text="ISO 4217, upper case, e.g. EUR.")
    occurredAt = Rfc3339DateTimeField(required=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        currency, amount = data["currency"], data["amount"]
        if currency not in currencies.MINOR_UNITS:
            raise InvalidStake(f"currency {currency!r} is not supported", details={"reason": "unknown_currency"})
        digits = currencies.MINOR_UNITS[currency]
        if not re.fullmatch(amount_pattern(digits), amount):
            message = (
                f"amount {amount!r} is not a positive amount of {currency} below 1e9 with at most {digits} decimals"
            )
            raise InvalidStake(message, details={"reason": "invalid_amount"})
        return data


class StakeInputSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """StakeInput's document: the amount's decimals depend on the currency, so one branch per number of digits."""

    target_class = StakeInput

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        by_digits: dict[int, list[str]] = defaultdict(list)
        for code, digits in sorted(currencies.MINOR_UNITS.items()):
            by_digits[digits].append(code)
        branches = []
        for digits, codes in sorted(by_digits.items()):
            # A component of its own: drf-spectacular would merge inline enums of one property name.
            enum = schema_component(
                f"CurrencyWith{digits}DecimalsEnum",
                {"type": "string", "enum": codes, "description": f"ISO 4217 currencies with {digits} decimals."},
            )
            auto_schema.registry.register_on_missing(enum)
            amount = {"type": "string", "pattern": amount_pattern(digits)}
            branches.append({"type": "object", "properties": {"currency": enum.ref, "amount": amount}})
        return {**schema, "oneOf": branches}


@extend_schema_serializer(component_name="ProducedStake")
class ProducedStakeOutput(serializers.Serializer[Any]):
    stakeId = serializers.CharField(source="stake_id")
    topic = serializers.CharField()
    partition = serializers.IntegerField()
    offset = serializers.IntegerField()


class StakeProduceApi(StaffOrInternalTokenApi):
    """Test door: produce a player.stakeCreated to player.v1.staked, as the game service does.

    Staff with `produce_stake`, or the stakes token in X-Internal-Token. The
    consumer then applies it like any other stake (so a user can drive a pool
    from Swagger UI).
    """

    required_permission = PRODUCE_STAKE
    internal_token_purpose = "stakes"  # noqa: S105 (the name of a purpose, not a secret)
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (InvalidStake, BrokerUnavailable)

    @extend_schema(request=StakeInput, responses={202: ProducedStakeOutput})
    def post(self, request: Request) -> Response:
        data = StakeInput(data=request.data)
        data.is_valid(raise_exception=True)
        message = {
            **data.validated_data,
            "stakeId": data.validated_data.get("stakeId") or str(uuid.uuid4()),
            "occurredAt": (data.validated_data.get("occurredAt") or timezone.now()).isoformat(),
        }
        actor = self.actor(request)
        assert actor is None or isinstance(actor, Player)
        produced = stake_produce(message=message, actor=actor)
        return Response(ProducedStakeOutput(produced).data, status=status.HTTP_202_ACCEPTED)
