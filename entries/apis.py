"""Ballot endpoints: submit a ballot, list my ballots."""

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from entries.models import Ballot, Player
from entries.selectors import ballots_of_player
from entries.services import ballot_submit

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
