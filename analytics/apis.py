"""Business metrics for staff: GET /api/v1/metrics/hourly, /metrics/daily and /metrics/reconciliation.

Staff with ``analytics.view_business_metrics`` (the operations and
compliance roles) only; anyone else gets 403, as at every staff door.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import measures
from analytics.days import EARLIEST, LATEST, refresh_window, within_bounds
from analytics.models import ALL_KINDS, VIEW_BUSINESS_METRICS, DailySummary, HourlyMetric
from analytics.selectors import (
    HourCheck,
    Mismatch,
    Reconciliation,
    daily_summary,
    hourly_metrics,
    reconciliation,
)
from core.authorization import may
from core.currencies import MINOR_UNITS, format_money
from core.errors import PermissionDenied
from core.fields import IsoDateField, Rfc3339DateTimeField
from core.permissions import acting_staff
from lotteries.models import Lottery

NONE = "none"  # the filter value for the empty kind (no such lottery) or currency (not money)
KINDS = [*Lottery.Kind.values, NONE]
CURRENCIES = [*sorted(MINOR_UNITS), NONE]
MAX_RECONCILIATION_DAYS = 31


class HasMetricsPermission(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        staff = acting_staff(request)
        return staff is not None and may(staff, VIEW_BUSINESS_METRICS)


class MetricsApi(APIView):
    """Base of the metrics views: staff with the permission; a refused staff member is told which one."""

    permission_classes = [HasMetricsPermission]

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        if acting_staff(request) is not None:
            raise PermissionDenied(message, details={"permission": VIEW_BUSINESS_METRICS})
        raise exceptions.PermissionDenied(detail=message, code=code)


@extend_schema_field({"type": "string", "pattern": r"^\d+(\.\d+)?$", "example": "18.90"})
class AmountField(serializers.Field):  # type: ignore[type-arg]
    """An amount in its row's currency, with that currency's minor digits; "0" on a row without one."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> tuple[Decimal | None, str]:
        return super().get_attribute(instance), instance.currency

    def to_representation(self, value: tuple[Decimal | None, str]) -> str | None:
        amount, currency = value
        if amount is None:
            return None
        return format_money(amount, currency) if currency in MINOR_UNITS else f"{amount.normalize() + 0:f}"


@extend_schema_field({"type": "string", "nullable": True, "pattern": r"^\d+(\.\d+)?$", "example": "18.90"})
class NullableAmountField(AmountField):
    """An amount as above, or null (the daily summary's rows over every currency)."""


class HourlyOutput(serializers.ModelSerializer[HourlyMetric]):
    staked_revenue = AmountField(help_text="Stakes applied, summed, in the row's currency.")
    payouts = AmountField(help_text="Awards' win_sum, summed, in the row's currency.")
    refunds = AmountField(help_text="Stakes of the pools cancelled, summed, in the row's currency.")

    class Meta:
        model = HourlyMetric
        fields = ["hour", "day", "kind", "currency", *measures.COLUMNS, "ballots_refused", "computed_at"]


class DailyOutput(serializers.ModelSerializer[DailySummary]):
    kind = serializers.CharField(help_text="daily, drop, pool, empty (no such lottery), or * for every kind.")
    currency = serializers.CharField(help_text="A pool's currency, empty, or * (with kind *).")
    staked_revenue = NullableAmountField(help_text="In the row's currency; null on the * rows.")
    payouts = NullableAmountField(help_text="In the row's currency; null on the * rows.")
    refunds = NullableAmountField(help_text="In the row's currency; null on the * rows.")
    unique_players = serializers.IntegerField(help_text="Distinct players of the day, counted over its rows.")

    class Meta:
        model = DailySummary
        fields = ["day", "kind", "currency", *measures.COLUMNS, "ballots_refused"]


RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"


class MomentField(Rfc3339DateTimeField):
    """An RFC 3339 date-time between 1900 and 9000 (UTC): hours and days can be counted around it."""

    def to_internal_value(self, value: Any) -> datetime:
        moment = super().to_internal_value(value)
        if not within_bounds(moment):
            raise serializers.ValidationError(
                f"Must lie between {EARLIEST:%Y-%m-%dT%H:%M:%SZ} and {LATEST:%Y-%m-%dT%H:%M:%SZ}."
            )
        return moment


def _dimension(value: str | None) -> str | None:
    return "" if value == NONE else value


_DIMENSION_PARAMETERS = [
    OpenApiParameter(
        "kind", {"type": "string", "enum": KINDS}, description=f"A lottery kind; `{NONE}`: the rows of no lottery."
    ),
    OpenApiParameter(
        "currency", {"type": "string", "enum": CURRENCIES}, description=f"ISO 4217; `{NONE}`: the rows without money."
    ),
]


class QueryFilters(serializers.Serializer[dict[str, Any]]):
    """Query parameters, each refused when given empty (DRF would take ``?to=`` for no ``to`` at all)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        blank = {str(name): ["This field may not be blank."] for name in self.fields if data.get(name) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        validated: dict[str, Any] = super().to_internal_value(data)
        return validated


class HourlyFilters(QueryFilters):
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {
            "from": MomentField(required=False),
            "to": MomentField(required=False),
            "kind": serializers.ChoiceField(choices=KINDS, required=False),
            "currency": serializers.ChoiceField(choices=CURRENCIES, required=False),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from" in attrs and "to" in attrs and attrs["to"] <= attrs["from"]:
            raise serializers.ValidationError({"to": ["Must come after from."]})
        return attrs


class HourlyMetricsApi(MetricsApi, ListAPIView[HourlyMetric]):
    """Business metrics by UTC hour and dimension (lottery kind, and currency where money is involved), newest
    first: every column of ``business_metrics_hourly`` (docs/business-metrics.md says where each comes from).
    ``from`` (inclusive) and ``to`` (exclusive) are RFC 3339 date-times."""

    serializer_class = HourlyOutput

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Hours from this one on (RFC 3339)."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Hours before this one (RFC 3339)."),
            *_DIMENSION_PARAMETERS,
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[HourlyMetric]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI document is built without a request
            return HourlyMetric.objects.none()
        filters = HourlyFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        given = filters.validated_data
        return hourly_metrics(
            start=given.get("from"),
            end=given.get("to"),
            kind=_dimension(given.get("kind")),
            currency=_dimension(given.get("currency")),
        )


class DailyFilters(QueryFilters):
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {
            "from": IsoDateField(required=False),
            "to": IsoDateField(required=False),
            "kind": serializers.ChoiceField(choices=[*KINDS, ALL_KINDS], required=False),
            "currency": serializers.ChoiceField(choices=[*CURRENCIES, ALL_KINDS], required=False),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from" in attrs and "to" in attrs and attrs["to"] < attrs["from"]:
            raise serializers.ValidationError({"to": ["Must not come before from."]})
        return attrs


class DailyMetricsApi(MetricsApi, ListAPIView[DailySummary]):
    """The daily summary (``business_metrics_daily``), newest day first: each LOTTERY_TIME_ZONE day's sums by
    dimension, and a row of kind and currency `*` over every dimension (money null there). `unique_players`
    is the day's distinct players, counted over its source rows: never a sum of the hours'."""

    serializer_class = DailyOutput

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="Days from this one on, YYYY-MM-DD."),
            OpenApiParameter("to", OpenApiTypes.DATE, description="Days up to this one, YYYY-MM-DD."),
            OpenApiParameter(
                "kind",
                {"type": "string", "enum": [*KINDS, ALL_KINDS]},
                description=f"A lottery kind; `{NONE}`: no lottery; `*`: every kind together.",
            ),
            OpenApiParameter(
                "currency",
                {"type": "string", "enum": [*CURRENCIES, ALL_KINDS]},
                description=f"ISO 4217; `{NONE}`: without money; `*`: the rows of every kind together.",
            ),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[DailySummary]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI document is built without a request
            return DailySummary.objects.none()
        filters = DailyFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        given = filters.validated_data
        return daily_summary(
            first=given.get("from"),
            last=given.get("to"),
            kind=_dimension(given.get("kind")),
            currency=_dimension(given.get("currency")),
        )


class StakeFlowOutput(serializers.Serializer[Any]):
    received = serializers.IntegerField(help_text="Counted by the consumer, in its transaction.")
    applied = serializers.IntegerField(help_text="Counted by the consumer.")
    duplicate = serializers.IntegerField(help_text="Counted by the consumer.")
    dead_lettered = serializers.IntegerField(help_text="Counted by the consumer.")
    stakes_stored = serializers.IntegerField(help_text="Stake rows created in the hour.")
    inbox_rows = serializers.IntegerField(help_text="Inbox rows the consumer claimed in the hour.")
    dead_letters = serializers.IntegerField(help_text="Dead letters stored in the hour.")


class MismatchOutput(serializers.Serializer[Mismatch]):
    column = serializers.CharField()
    kind = serializers.CharField()
    currency = serializers.CharField(help_text="Empty where no money is involved.")
    table = serializers.CharField(help_text="What the table holds, as a decimal string.")
    sources = serializers.CharField(help_text="What the source rows say now, as a decimal string.")


PENDING_HELP = "pending: not recomputed since the hour ended, and not due yet (two refresh periods after its end)."


class HourCheckOutput(serializers.Serializer[HourCheck]):
    hour = serializers.DateTimeField()
    status = serializers.SerializerMethodField(help_text=f"ok, failing, or {PENDING_HELP}")
    failures = serializers.ListField(child=serializers.CharField(), help_text="Each failed check, with its figures.")
    stakes = StakeFlowOutput()
    table = serializers.ChoiceField(
        choices=["ok", "failing", "pending"], help_text=f"The table against its sources; {PENDING_HELP}"
    )
    mismatches = MismatchOutput(
        many=True, help_text="Each column of each kind and currency where the table and the sources differ."
    )
    inbox_checked = serializers.BooleanField(help_text="False past INBOX_RETENTION_DAYS: the inbox was purged.")
    dead_letters_checked = serializers.BooleanField(help_text="False past DEAD_LETTER_RETENTION_DAYS.")

    def get_status(self, check: HourCheck) -> str:
        return "failing" if check.failures else check.table


class ReconciliationOutput(serializers.Serializer[Reconciliation]):
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {
            "from": serializers.DateTimeField(source="start", help_text="The first hour checked."),
            "to": serializers.DateTimeField(source="end", help_text="The end of the last hour checked."),
            "status": serializers.ChoiceField(
                choices=["ok", "failing"], source="status_word", help_text="failing when any hour or the total fails."
            ),
            "last_recomputed": serializers.DateTimeField(
                allow_null=True, help_text="When the hourly table was last recomputed."
            ),
            "totals": StakeFlowOutput(help_text="The stake flow over the whole range."),
            "total_failures": serializers.ListField(child=serializers.CharField()),
            "failing_hours": serializers.ListField(child=serializers.DateTimeField(), source="failing_hour_starts"),
            "hours": HourCheckOutput(many=True),
        }


class ReconciliationFilters(HourlyFilters):
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {"from": MomentField(required=False), "to": MomentField(required=False)}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        window_start, window_end = refresh_window(timezone.now())
        end = attrs.get("to") or window_end
        start = attrs.get("from") or end - (window_end - window_start)
        if end <= start:
            raise serializers.ValidationError({"from": ["Must come before to (now, when to is not given)."]})
        if end - start > timedelta(days=MAX_RECONCILIATION_DAYS):
            raise serializers.ValidationError({"to": [f"At most {MAX_RECONCILIATION_DAYS} days after from."]})
        return {"from": start, "to": end}


class ReconciliationApi(MetricsApi):
    """Does every hour add up? For each UTC hour of ``[from, to)`` (default: the hours beat's refresh keeps,
    the last METRICS_WINDOW_HOURS (24) with this one; at most 31 days): stakes received = applied + duplicate +
    dead-lettered, checked against the stakes stored, the inbox and the dead letters; and the hourly table's
    columns, for each kind and currency, against a fresh count over their source rows (an hour the refresh has
    not recomputed since it ended is `pending` there until that is due, two refresh periods after its end).
    ``status`` is `failing` when any hour, or the range's total, fails."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.DATETIME,
                description=(
                    "The first hour (RFC 3339); default: as many hours before to as beat's refresh keeps "
                    "(METRICS_WINDOW_HOURS, 24, and an earlier hour whose recompute is not yet due)."
                ),
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.DATETIME,
                description="The end (RFC 3339, exclusive); default: the end of the current hour.",
            ),
        ],
        responses={200: ReconciliationOutput},
    )
    def get(self, request: Request) -> Response:
        filters = ReconciliationFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        report = reconciliation(start=filters.validated_data["from"], end=filters.validated_data["to"])
        return Response(ReconciliationOutput(report).data)
