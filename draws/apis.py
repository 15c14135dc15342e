"""Winners, draw records and their verification."""

import json
from collections.abc import Iterator
from itertools import islice
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.fields import IsoDateField, MoneyField
from core.throttling import AddressScopedRateThrottle, AnonRateThrottle, UserRateThrottle
from draws.errors import AwardNotClaimable, AwardNotFound, DrawNotFound
from draws.models import DRAW_PUBLIC_FIELDS, Draw, DrawVerificationRecord, LotteryAward
from draws.selectors import awards_of_day, awards_of_lottery, draw_get
from draws.services import award_claim, draw_ballot_ids, draw_verification_stored
from entries.errors import PlayerBanned
from entries.models import Player
from lotteries.errors import LotteryNotFound
from lotteries.selectors import lottery_exists


class WinnerOutput(serializers.ModelSerializer[LotteryAward]):
    """A public winner: no phone number, no full name."""

    award_id = serializers.IntegerField(source="id")
    lottery_id = serializers.IntegerField()
    lottery_title = serializers.CharField(source="lottery.title")
    day = serializers.DateField(source="lottery.day")
    draw_id = serializers.IntegerField()
    ballot_id = serializers.IntegerField()
    player = serializers.CharField(source="player.public_name")
    win_sum = MoneyField(currency_source="currency", allow_null=True)
    awarded_at = serializers.DateTimeField(source="created_at")
    promotes_award_id = serializers.IntegerField(
        source="promoted_from_id", allow_null=True, help_text="A promoted alternate's: the forfeited award it replaces."
    )

    class Meta:
        model = LotteryAward
        fields = [
            "award_id",
            "lottery_id",
            "lottery_title",
            "day",
            "draw_id",
            "rank",
            "ballot_id",
            "player",
            "prize",
            "win_sum",
            "currency",
            "status",
            "awarded_at",
            "claim_deadline",
            "claimed_at",
            "forfeited_at",
            "forfeit_reason",
            "promotes_award_id",
            "alternate_rank",
        ]


class WinnersOfDayApi(ListAPIView[LotteryAward]):
    """Winners of the lotteries of one date (the daily lottery of that date, drops closing that day)."""

    permission_classes = [AllowAny]
    serializer_class = WinnerOutput

    class FilterInput(serializers.Serializer[dict[str, Any]]):
        date = IsoDateField()

    @extend_schema(
        parameters=[OpenApiParameter("date", OpenApiTypes.DATE, required=True, description="The day, YYYY-MM-DD.")]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[LotteryAward]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI document is built without a request
            return LotteryAward.objects.none()
        filters = self.FilterInput(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return awards_of_day(day=filters.validated_data["date"])


class AwardClaimApi(APIView):
    """Claim a drop's award: by its winner, before its `claim_deadline` (DROP_CLAIM_SECONDS after the draw).

    An award left unclaimed, or whose winner is banned first, is forfeited and
    the draw's next alternate gets one of the same rank. Claiming twice
    returns the claimed award.
    """

    permission_classes = [IsAuthenticated]
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (AwardNotFound, AwardNotClaimable, PlayerBanned)

    @extend_schema(request=None, responses={200: WinnerOutput})
    def post(self, request: Request, award_id: int) -> Response:
        assert isinstance(request.user, Player)
        award = award_claim(award_id=award_id, player=request.user)
        return Response(WinnerOutput(awards_of_lottery(lottery_id=award.lottery_id).get(pk=award.pk)).data)


class LotteryWinnersApi(ListAPIView[LotteryAward]):
    permission_classes = [AllowAny]
    serializer_class = WinnerOutput
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (LotteryNotFound,)

    def get_queryset(self) -> QuerySet[LotteryAward]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI document is built without a request
            return LotteryAward.objects.none()
        lottery_id = self.kwargs["lottery_id"]
        if not lottery_exists(lottery_id=lottery_id):
            raise LotteryNotFound(details={"lottery_id": lottery_id})
        return awards_of_lottery(lottery_id=lottery_id)


class DrawOutput(serializers.ModelSerializer[Draw]):
    lottery_id = serializers.IntegerField()

    class Meta:
        model = Draw
        fields = ["id", "lottery_id", *DRAW_PUBLIC_FIELDS]


class DrawDetailApi(APIView):
    permission_classes = [AllowAny]
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (DrawNotFound,)

    @extend_schema(responses={200: DrawOutput})
    def get(self, request: Request, draw_id: int) -> Response:
        draw = draw_get(draw_id=draw_id)
        if draw is None:
            raise DrawNotFound(details={"draw_id": draw_id})
        return Response(DrawOutput(draw).data)


class VerificationResultOutput(serializers.Serializer[Any]):
    """The server's recomputation of the draw."""

    matches = serializers.BooleanField(help_text="All four checks below hold.")
    commitment_matches = serializers.BooleanField(help_text="sha256(seed) is the published commitment.")
    entries_digest_matches = serializers.BooleanField(help_text="The sealed ballot ids hash to the entries digest.")
    winners_match = serializers.BooleanField(help_text="The algorithm picks the published winners.")
    alternates_match = serializers.BooleanField(
        help_text="The same shuffle, continued, picks the published alternates, in order."
    )
    recomputed_entries_digest = serializers.CharField()
    recomputed_winning_ballot_ids = serializers.ListField(child=serializers.IntegerField())
    recomputed_alternate_ballot_ids = serializers.ListField(child=serializers.IntegerField())


class VerificationOutput(DrawOutput):
    """Schema of the verification document (``ballot_ids`` is streamed last)."""

    verification = VerificationResultOutput()
    ballot_ids = serializers.ListField(child=serializers.IntegerField())

    class Meta(DrawOutput.Meta):
        fields = [*DrawOutput.Meta.fields, "verification", "ballot_ids"]


class DrawVerificationApi(APIView):
    """Everything needed to recompute the draw, and the server's own recomputation.

    ``ballot_ids`` is the ascending list of valid ballot ids the draw sealed;
    with the seed it determines the winners (see the README's script). The
    list is streamed, so a draw of a million ballots costs no big buffer.
    ``verification`` is the server's recomputation, made once on the first
    request and stored (``computed_at`` says when); the list is read afresh.
    Rate-limited per client address (scope ``verification``).
    """

    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, UserRateThrottle, AddressScopedRateThrottle]
    throttle_scope = "verification"
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (DrawNotFound,)

    @extend_schema(responses={200: VerificationOutput})
    def get(self, request: Request, draw_id: int) -> StreamingHttpResponse:
        draw = draw_get(draw_id=draw_id)
        if draw is None:
            raise DrawNotFound(details={"draw_id": draw_id})
        verification = draw_verification_stored(draw=draw)
        return StreamingHttpResponse(_verification_json(draw, verification), content_type="application/json")


def _verification_json(draw: Draw, verification: DrawVerificationRecord) -> Iterator[str]:
    head = dict(DrawOutput(draw).data)
    head["verification"] = {
        "matches": verification.matches,
        "commitment_matches": verification.commitment_matches,
        "entries_digest_matches": verification.entries_digest_matches,
        "winners_match": verification.winners_match,
        "alternates_match": verification.alternates_match,
        "recomputed_entries_count": verification.recomputed_entries_count,
        "recomputed_entries_digest": verification.recomputed_entries_digest,
        "recomputed_winning_ballot_ids": list(verification.recomputed_winning_ballot_ids),
        "recomputed_alternate_ballot_ids": list(verification.recomputed_alternate_ballot_ids),
        "computed_at": serializers.DateTimeField().to_representation(verification.computed_at),
    }
    yield json.dumps(head, default=str)[:-1] + ', "ballot_ids": ['
    ids = draw_ballot_ids(draw=draw)
    separator = ""
    while chunk := list(islice(ids, 10_000)):
        yield separator + ",".join(map(str, chunk))
        separator = ","
    yield "]}"
