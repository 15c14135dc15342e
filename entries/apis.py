"""Player endpoints: submit a ballot, list my ballots; the token and ping."""

from typing import Any, ClassVar

import django_filters
from django.db.models import QuerySet
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

from core.errors import ApplicationError
from core.filters import IdFilter, StrictFilterSet
from core.parsers import JSONParser
from entries.errors import (
    BallotLimitReached,
    DuplicateEntry,
    IdempotencyKeyReused,
    LoginLockedOut,
    PlayerBanned,
)
from entries.lockout import RETRY_AFTER_HEADER, is_locked_out, lockout_error
from entries.models import Ballot, Player
from entries.selectors import ballots_of_player
from entries.services import ballot_submit
from lotteries.errors import LotteryClosed, LotteryNotFound, LotteryNotOpen, StakeRequired

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
        LotteryNotOpen,
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
