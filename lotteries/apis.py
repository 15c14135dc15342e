"""Lottery endpoints: list and detail (closing is ``lifecycle.apis``)."""

from typing import Any, ClassVar

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.filters import IsoDateFilter, StrictFilterSet
from lotteries.errors import LotteryNotFound
from lotteries.models import LOTTERY_PUBLIC_FIELDS, Lottery, LotteryTransition
from lotteries.selectors import lottery_detail, lottery_list


class LotteryFilter(StrictFilterSet):
    kind = django_filters.ChoiceFilter(choices=Lottery.Kind.choices)
    state = django_filters.ChoiceFilter(choices=Lottery.State.choices)
    date = IsoDateFilter(field_name="day", help_text="The lottery's day, YYYY-MM-DD.")
    date_from = IsoDateFilter(field_name="day", lookup_expr="gte", help_text="Days from this one on, YYYY-MM-DD.")
    date_to = IsoDateFilter(field_name="day", lookup_expr="lte", help_text="Days up to this one, YYYY-MM-DD.")

    class Meta:
        model = Lottery
        fields = ["kind", "state", "date", "date_from", "date_to"]


class LotteryOutput(serializers.ModelSerializer[Lottery]):
    ballot_count = serializers.IntegerField(source="valid_ballots", help_text="Valid ballots.")
    draw_id = serializers.SerializerMethodField()
    unawarded_quantity = serializers.SerializerMethodField(
        help_text="Units of the prize the draw left without a winner (fewer valid entries than the quantity); "
        "null before the draw."
    )

    class Meta:
        model = Lottery
        fields = ["id", *LOTTERY_PUBLIC_FIELDS, "ballot_count", "draw_id", "unawarded_quantity"]

    def get_draw_id(self, lottery: Lottery) -> int | None:
        draw = getattr(lottery, "draw", None)
        return draw.pk if draw is not None else None

    def get_unawarded_quantity(self, lottery: Lottery) -> int | None:
        draw = getattr(lottery, "draw", None)
        return draw.unawarded_quantity if draw is not None else None


class TransitionOutput(serializers.ModelSerializer[LotteryTransition]):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = LotteryTransition
        fields = ["from_state", "to_state", "source", "forced", "note", "at"]


class LotteryWinnerOutput(serializers.Serializer[Any]):
    award_id = serializers.IntegerField(source="id")
    rank = serializers.IntegerField()
    ballot_id = serializers.IntegerField()
    player = serializers.CharField(source="player.public_name")
    prize = serializers.CharField()
    status = serializers.CharField(help_text="played_out (awarded), claimed, or forfeited (with its reason).")
    forfeit_reason = serializers.CharField(help_text="unclaimed or banned, for a forfeited award; else empty.")
    promotes_award_id = serializers.IntegerField(
        source="promoted_from_id", allow_null=True, help_text="A promoted alternate's: the forfeited award it replaces."
    )


class LotteryDetailOutput(LotteryOutput):
    transitions = TransitionOutput(many=True)
    winners = LotteryWinnerOutput(many=True, source="awards")

    class Meta(LotteryOutput.Meta):
        fields = [*LotteryOutput.Meta.fields, "transitions", "winners"]


class LotteryListApi(ListAPIView[Lottery]):
    """Lotteries, newest day first. Filter by kind, state and date (YYYY-MM-DD)."""

    permission_classes = [AllowAny]
    serializer_class = LotteryOutput
    filterset_class = LotteryFilter

    def get_queryset(self) -> QuerySet[Lottery]:
        return lottery_list()


class LotteryDetailApi(APIView):
    permission_classes = [AllowAny]
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (LotteryNotFound,)

    @extend_schema(responses={200: LotteryDetailOutput})
    def get(self, request: Request, lottery_id: int) -> Response:
        lottery = lottery_detail(lottery_id=lottery_id)
        if lottery is None:
            raise LotteryNotFound(details={"lottery_id": lottery_id})
        return Response(LotteryDetailOutput(lottery).data)
