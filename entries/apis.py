"""Ballot endpoints: submit a ballot, list my ballots; the token, ping and the stakes test door."""

import re
import uuid
from collections import defaultdict
from typing import Any, ClassVar

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from core import currencies
from core.errors import ApplicationError
from core.fields import Rfc3339DateTimeField, StrictCharField
from core.filters import IdFilter, StrictFilterSet
from core.parsers import JSONParser
from core.permissions import StaffOrInternalTokenApi
from core.schema import schema_component
from entries.errors import (
    BallotLimitReached,
    BrokerUnavailable,
    DuplicateEntry,
    IdempotencyKeyReused,
    InvalidStake,
    LoginLockedOut,
    PlayerBanned,
)
from entries.lockout import RETRY_AFTER_HEADER, is_locked_out, lockout_error
from entries.models import PRODUCE_STAKE, Ballot, Player
from entries.selectors import ballots_of_player
from entries.services import ballot_submit, stake_produce
from entries.stake_messages import MAX_ID_LENGTH
from lotteries.errors import LotteryClosed, LotteryNotFound, StakeRequired

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # 1 to 255 printable ASCII characters, no space


class BallotOutput(serializers.ModelSerializer[Ballot]):
    lottery_id = serializers.IntegerField()

    class Meta:
        model = Ballot
        fields = ["id", "lottery_id", "status", "rejection_reason", "created_at"]


class BallotSubmitApi(APIView):
    """Enter the lottery. One ballot per player by default (MAX_BALLOTS_PER_PLAYER)."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [UserRateThrottle, ScopedRateThrottle]
    throttle_scope = "ballots"

    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (
        PlayerBanned,
        LotteryNotFound,
        LotteryClosed,
        StakeRequired,
        BallotLimitReached,
        DuplicateEntry,
        IdempotencyKeyReused,
    )

    class HeaderInput(serializers.Serializer[dict[str, str]]):
        idempotency_key = serializers.RegexField(IDEMPOTENCY_KEY_PATTERN, required=False)

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "minLength": 1, "maxLength": 255},
                OpenApiParameter.HEADER,
                description=(
                    "Optional, unique per player: a retry with the same key returns the first result. "
                    "1 to 255 printable ASCII characters, no spaces; sent empty, it is refused."
                ),
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                {"type": "string", "enum": ["true"]},
                OpenApiParameter.HEADER,
                description="Present when this is the first result of the same Idempotency-Key, replayed.",
                response=[201],
            ),
        ],
        responses={201: BallotOutput},
    )
    def post(self, request: Request, lottery_id: int) -> Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        headers = self.HeaderInput(data={} if key is None else {"idempotency_key": key})
        headers.is_valid(raise_exception=True)
        assert isinstance(request.user, Player)
        result = ballot_submit(
            lottery_id=lottery_id, player=request.user, idempotency_key=headers.validated_data.get("idempotency_key")
        )
        response = Response(BallotOutput(result.ballot).data, status=status.HTTP_201_CREATED)
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class BallotFilter(StrictFilterSet):
    lottery = IdFilter(field_name="lottery_id", help_text="Only the ballots in this lottery.")
    status = django_filters.ChoiceFilter(choices=Ballot.Status.choices)

    class Meta:
        model = Ballot
        fields = ["lottery", "status"]


class MyBallotsApi(ListAPIView[Ballot]):
    """The authenticated player's ballots, newest first."""

    permission_classes = [IsAuthenticated]
    serializer_class = BallotOutput
    filterset_class = BallotFilter

    def get_queryset(self) -> QuerySet[Ballot]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI document is built without a caller
            return Ballot.objects.none()
        assert isinstance(self.request.user, Player)
        return ballots_of_player(player=self.request.user)


class PingOutput(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["ok"])


class PingApi(APIView):
    """Authenticated no-op: the same middleware, authentication and throttling as every endpoint."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: PingOutput})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


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


class TokenOutput(serializers.Serializer[Any]):
    token = serializers.RegexField(r"^[0-9a-f]{40}$", help_text="Send it as `Authorization: Token <token>`.")


class TokenObtainApi(ObtainAuthToken):
    """Exchange username and password for the API token.

    Rate-limited per client address, and locked out per (username, client
    address) after repeated wrong passwords (entries.lockout): a locked-out
    request gets 429 ``login_locked_out`` and no token, whatever the password.

    Anonymous: credentials sent with the request are not read, so a stale
    token does not stand in the way of getting the current one.
    """

    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    # DRF's view parses with its own JSONParser; this one is the API's (depth and size limits).
    parser_classes = [FormParser, MultiPartParser, JSONParser]
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (LoginLockedOut,)

    @extend_schema_serializer(component_name="AuthToken")
    class Input(AuthTokenSerializer):
        # Player's own bound: a longer name matches nobody, and must not reach the lock-out records.
        username = serializers.CharField(label="Username", write_only=True, max_length=150)

    serializer_class = Input

    @extend_schema(
        request=Input,
        responses={200: TokenOutput},
        examples=[
            OpenApiExample(
                "A demo player (manage.py seed_demo)",
                value={"username": "alice", "password": "demo-password"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except serializers.ValidationError:
            if is_locked_out(request):
                raise lockout_error() from None
            raise

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, LoginLockedOut):
            response[RETRY_AFTER_HEADER] = str(exc.details["retry_after_seconds"])
        return response
