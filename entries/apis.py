"""Player endpoints: submit a ballot, list my ballots, my notification settings; the token and ping."""

from typing import Any, ClassVar

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import REPLAYED_HEADER, idempotency_key, idempotency_parameters, represent
from core.errors import ApplicationError
from core.fields import StrictBooleanField
from core.filters import IdFilter, StrictFilterSet
from core.parsers import JSONParser
from core.throttling import ScopedRateThrottle, UserRateThrottle
from entries.errors import (
    BallotLimitReached,
    DuplicateEntry,
    IdempotencyKeyReused,
    InvalidPhoneNumber,
    LoginLockedOut,
    PhoneNumberOnFile,
    PhoneNumberRequired,
    PlayerBanned,
)
from entries.lockout import RETRY_AFTER_HEADER, is_locked_out, lockout_error
from entries.models import OPT_IN_SOURCES, OPT_OUT_SOURCES, Ballot, Player
from entries.phones import mask_phone
from entries.selectors import ballots_of_player, player_as_stored
from entries.services import ballot_submit, my_notifications_set
from lotteries.errors import LotteryClosed, LotteryNotFound, LotteryNotOpen, StakeRequired


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

    @extend_schema(
        request=None,
        parameters=idempotency_parameters(unique_per="player", status_code=201),
        responses={201: BallotOutput},
    )
    def post(self, request: Request, lottery_id: int) -> Response:
        key = idempotency_key(request)
        assert isinstance(request.user, Player)
        result = ballot_submit(lottery_id=lottery_id, player=request.user, idempotency_key=key)
        response = Response(represent(BallotOutput, result.ballot), status=status.HTTP_201_CREATED)
        if result.replayed:
            response[REPLAYED_HEADER] = "true"
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


class MyNotificationsApi(APIView):
    """My SMS notification settings: whether drop announcements may be texted to me, and since when.

    ``PUT`` with ``drop_announcements`` true records my consent (now, source
    ``api``); false withdraws it. Texting STOP to the platform's number
    withdraws it too. The consent needs a phone number on file: a player
    without one may give it here, in any spelling with its country code
    (stored as E.164); changing a number on file is for staff, in admin.
    """

    permission_classes = [IsAuthenticated]
    domain_errors_by_method: ClassVar[dict[str, tuple[type[ApplicationError], ...]]] = {
        "get": (),
        "put": (InvalidPhoneNumber, PhoneNumberRequired, PhoneNumberOnFile),
    }

    @extend_schema_serializer(component_name="MyNotificationsInput")
    class Input(serializers.Serializer[dict[str, Any]]):
        drop_announcements = StrictBooleanField(help_text="True: text me when a drop opens. False: stop.")
        phone_number = serializers.CharField(
            required=False,
            allow_blank=False,
            max_length=64,
            help_text="The number to text, when none is on file: with its country code, e.g. +44 20 7946 0958.",
        )

    @extend_schema_serializer(component_name="MyNotificationsOutput")
    class Output(serializers.Serializer[Any]):
        phone_number = serializers.CharField(help_text="The number on file, masked (+44******958); empty: none.")
        drop_announcements = serializers.BooleanField(help_text="Whether drop announcements are texted to me.")
        opted_in_at = serializers.DateTimeField(allow_null=True, help_text="When I opted in; null while out.")
        opt_in_source = serializers.ChoiceField(
            choices=["", *OPT_IN_SOURCES], help_text="How the opt-in was given; empty while out."
        )
        opted_out_at = serializers.DateTimeField(allow_null=True, help_text="When I last opted out.")
        opt_out_source = serializers.ChoiceField(
            choices=["", *OPT_OUT_SOURCES], help_text="How the last opt-out came; empty: never."
        )

    @staticmethod
    def _render(player: Player) -> Response:
        return Response(
            MyNotificationsApi.Output(
                {
                    "phone_number": mask_phone(player.phone_number),
                    "drop_announcements": player.sms_opted_in,
                    "opted_in_at": player.sms_opt_in_at,
                    "opt_in_source": player.sms_opt_in_source,
                    "opted_out_at": player.sms_opt_out_at,
                    "opt_out_source": player.sms_opt_out_source,
                }
            ).data
        )

    @extend_schema(request=None, responses={200: Output})
    def get(self, request: Request) -> Response:
        assert isinstance(request.user, Player)
        return self._render(player_as_stored(player_id=request.user.pk))

    @extend_schema(request=Input, responses={200: Output})
    def put(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        assert isinstance(request.user, Player)
        player = my_notifications_set(
            player=request.user,
            drop_announcements=data.validated_data["drop_announcements"],
            phone_number=data.validated_data.get("phone_number"),
        )
        return self._render(player)


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
