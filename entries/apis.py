"""Ballot endpoints: submit a ballot, list my ballots."""

import uuid
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
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

from entries.errors import LoginLockedOut
from entries.lockout import RETRY_AFTER_HEADER, is_locked_out, lockout_error
from entries.models import PRODUCE_STAKE, Ballot, Player
from entries.selectors import ballots_of_player
from entries.services import ballot_submit, stake_produce
from lottery_site.parsers import JSONParser
from lottery_site.permissions import StaffOrInternalTokenApi

IDEMPOTENCY_HEADER = "Idempotency-Key"


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

    class HeaderInput(serializers.Serializer[dict[str, str]]):
        idempotency_key = serializers.RegexField(r"^[\x21-\x7e]{1,255}$", required=False)

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Optional, unique per player: a retry with the same key returns the first result.",
            )
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


class MyBallotsApi(ListAPIView[Ballot]):
    """The authenticated player's ballots, newest first."""

    permission_classes = [IsAuthenticated]
    serializer_class = BallotOutput
    filterset_fields = ["lottery", "status"]

    def get_queryset(self) -> QuerySet[Ballot]:
        assert isinstance(self.request.user, Player)
        return ballots_of_player(player=self.request.user)


class PingApi(APIView):
    """Authenticated no-op: the same middleware, authentication and throttling as every endpoint."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class StakeProduceApi(StaffOrInternalTokenApi):
    """Test door: produce a player.stakeCreated to player.v1.staked, as the game service does.

    Staff with `produce_stake`, or the stakes token in X-Internal-Token. The
    consumer then applies it like any other stake (so a user can drive a pool
    from Swagger UI).
    """

    required_permission = PRODUCE_STAKE
    internal_token_purpose = "stakes"  # noqa: S105 (the name of a purpose, not a secret)

    class Input(serializers.Serializer[dict[str, Any]]):
        stakeId = serializers.CharField(required=False, max_length=100)
        playerId = serializers.CharField(max_length=100)
        gameId = serializers.CharField(max_length=100)
        amount = serializers.CharField(max_length=40, help_text='A decimal string, e.g. "5.00".')
        currency = serializers.CharField(max_length=3, help_text="ISO 4217, e.g. EUR.")
        occurredAt = serializers.DateTimeField(required=False)

    class Output(serializers.Serializer[Any]):
        stakeId = serializers.CharField(source="stake_id")
        topic = serializers.CharField()
        partition = serializers.IntegerField()
        offset = serializers.IntegerField()

    @extend_schema(request=Input, responses={202: Output})
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        message = {
            **data.validated_data,
            "stakeId": data.validated_data.get("stakeId") or str(uuid.uuid4()),
            "occurredAt": (data.validated_data.get("occurredAt") or timezone.now()).isoformat(),
        }
        actor = self.actor(request)
        assert actor is None or isinstance(actor, Player)
        produced = stake_produce(message=message, actor=actor)
        return Response(self.Output(produced).data, status=status.HTTP_202_ACCEPTED)


class TokenObtainApi(ObtainAuthToken):
    """Exchange username and password for the API token.

    Rate-limited per client address, and locked out per (username, client
    address) after repeated wrong passwords (entries.lockout): a locked-out
    request gets 429 ``login_locked_out`` and no token, whatever the password.
    """

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    # DRF's view parses with its own JSONParser; this one is the API's (depth and size limits).
    parser_classes = [FormParser, MultiPartParser, JSONParser]

    @extend_schema_serializer(component_name="AuthToken")
    class Input(AuthTokenSerializer):
        # Player's own bound: a longer name matches nobody, and must not reach the lock-out records.
        username = serializers.CharField(label="Username", write_only=True, max_length=150)

    serializer_class = Input

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
