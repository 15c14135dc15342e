"""The load generator's doors (under /api/v1/): the stats endpoint, the ground truth, the chaos switches,
the generator's players and the trigger.

``GET stats`` is anyone's (it answers 506 during an injected burst); the
others are for staff with their permission, or the load generator's
internal token (``INTERNAL_LOADGEN_TOKEN``, in ``X-Internal-Token``).
"""

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, ClassVar

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import Pagination
from core.converters import MAX_ID
from core.errors import ApplicationError
from core.fields import Rfc3339DateTimeField, StrictCharField, StrictIntegerField
from core.filters import IdFilter, StrictFilterSet
from core.live import REGISTRY, live
from core.models import LiveSetting
from core.permissions import StaffOrInternalTokenApi
from draws.selectors import LotteryStats, lottery_stats, lottery_stats_totals
from entries.models import Ballot
from loadgen import population
from loadgen.errors import AnomalySwitchedOff, StatsBurstActive, StatsUnavailable
from loadgen.models import (
    PROVISION_PLAYERS,
    RECORD_ANOMALY,
    REPORTED_KIND_CHOICES,
    TRIGGER_DROP,
    VIEW_ANOMALIES,
    AnomalyKind,
    InjectedAnomaly,
)
from loadgen.selectors import anomalies_list
from loadgen.services import AnomalyReport, anomalies_record, drop_trigger, players_provision, stats_unavailable
from lotteries.apis import LotteryDetailOutput, LotteryFilter
from lotteries.errors import LotteryNotFound
from lotteries.models import Lottery
from lotteries.selectors import lottery_detail

LOADGEN_TOKEN_PURPOSE = "loadgen"  # noqa: S105 (the name of a purpose, not a secret)

# --- GET /api/v1/stats ------------------------------------------------------------------

_COUNTS = {
    "entries": "Ballots stored: valid, rejected and void.",
    "valid": "Valid ballots (the draw's).",
    "void": "Ballots voided by their player's ban.",
    "winners": "Awards made (a promoted alternate's included).",
    "awards_claimed": "Awards their winners claimed.",
    "awards_forfeited": "Awards forfeited (unclaimed in time, or the winner banned).",
}
_REJECTED_SCHEMA = {
    "type": "object",
    "description": "Ballots refused by fraud detection, by reason.",
    "properties": {reason: {"type": "integer", "minimum": 0} for reason in Ballot.RejectionReason.values},
    "required": list(Ballot.RejectionReason.values),
}


@extend_schema_field(_REJECTED_SCHEMA)
class RejectedField(serializers.DictField):
    pass


class StatsCountsOutput(serializers.Serializer[Any]):
    entries = serializers.IntegerField(help_text=_COUNTS["entries"])
    valid = serializers.IntegerField(help_text=_COUNTS["valid"])
    rejected = RejectedField()
    void = serializers.IntegerField(help_text=_COUNTS["void"])
    winners = serializers.IntegerField(help_text=_COUNTS["winners"])
    awards_claimed = serializers.IntegerField(help_text=_COUNTS["awards_claimed"])
    awards_forfeited = serializers.IntegerField(help_text=_COUNTS["awards_forfeited"])


@extend_schema_serializer(component_name="LotteryStats")
class LotteryStatsOutput(StatsCountsOutput):
    lottery_id = serializers.IntegerField(source="lottery.id")
    kind = serializers.CharField(source="lottery.kind")
    state = serializers.CharField(source="lottery.state")
    title = serializers.CharField(source="lottery.title")
    day = serializers.DateField(source="lottery.day")
    opens_at = serializers.DateTimeField(source="lottery.opens_at")
    closes_at = serializers.DateTimeField(source="lottery.closes_at")


class _Row:
    """A lottery beside its counts, as LotteryStatsOutput reads them."""

    def __init__(self, lottery: Lottery, stats: LotteryStats) -> None:
        self.lottery = lottery
        self.__dict__.update(vars(stats))


def _totals_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {"lotteries": {"type": "integer", "minimum": 0, "description": "Lotteries counted."}}
    properties |= {name: {"type": "integer", "minimum": 0, "description": text} for name, text in _COUNTS.items()}
    properties["rejected"] = _REJECTED_SCHEMA
    return {
        "type": "object",
        "description": "The platform's totals over every lottery the filters select (all pages).",
        "properties": properties,
        "required": list(properties),
    }


class StatsPagination(Pagination):
    """The usual pages, with the totals of every selected lottery beside them."""

    totals: dict[str, Any]

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data = {"totals": self.totals, **response.data}
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated: dict[str, Any] = super().get_paginated_response_schema(schema)
        paginated["properties"] = {"totals": _totals_schema(), **paginated["properties"]}
        paginated["required"] = ["totals", *paginated.get("required", [])]
        return paginated


class StatsApi(ListAPIView[Lottery]):
    """Per lottery (newest day first) and for the platform: entries, valid, rejected by reason, void, winners,
    awards claimed and forfeited. Filter by kind, state and date (YYYY-MM-DD), as the lottery list.

    During an injected anomaly (the first seed's ``anomalous_stats_endpoint_506``, armed by the load
    generator while the `ANOMALY_STATS_506_ENABLED` switch is on) a few consecutive requests answer
    506 `stats_unavailable`, with `Retry-After` and the anomaly's id in `details.anomaly_id`.
    """

    permission_classes = [AllowAny]
    serializer_class = LotteryStatsOutput
    filterset_class = LotteryFilter
    pagination_class = StatsPagination
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (StatsUnavailable,)

    def get_queryset(self) -> QuerySet[Lottery]:
        return Lottery.objects.order_by("-day", "-id")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        unavailable = stats_unavailable()
        if unavailable is not None:
            raise unavailable
        lotteries = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(lotteries)
        assert page is not None
        assert isinstance(self.paginator, StatsPagination)
        stats = lottery_stats(lottery_ids=[lottery.pk for lottery in page])
        count, totals = lottery_stats_totals(lotteries=lotteries)
        self.paginator.totals = {"lotteries": count, **StatsCountsOutput(totals).data}
        rows = [_Row(lottery, stats[lottery.pk]) for lottery in page]
        return self.get_paginated_response(LotteryStatsOutput(rows, many=True).data)


# --- The ground truth: GET and POST /api/v1/loadgen/anomalies --------------------------------


class AnomalyOutput(serializers.ModelSerializer[InjectedAnomaly]):
    lottery_id = serializers.IntegerField(allow_null=True)
    details = serializers.JSONField()

    class Meta:
        model = InjectedAnomaly
        fields = [
            "id", "kind", "run", "lottery_id", "details", "injected_at", "simulated_at",
            "served", "first_served_at", "last_served_at",
        ]  # fmt: skip


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 64})
class RunFilter(django_filters.CharFilter):
    """A run's name: never empty (the platform's own records are found by their kind)."""


class AnomalyFilter(StrictFilterSet):
    run = RunFilter(max_length=64, help_text="Only this generator run's.")
    kind = django_filters.ChoiceFilter(choices=AnomalyKind.choices)
    lottery = IdFilter(field_name="lottery_id", help_text="Only the anomalies of this lottery.")
    after = IdFilter(field_name="id", lookup_expr="gt", help_text="Only those recorded after this id (to follow).")

    class Meta:
        model = InjectedAnomaly
        fields = ["run", "kind", "lottery", "after"]


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JsonObjectField(serializers.DictField):
    """A JSON object that PostgreSQL's jsonb can store (no NUL character anywhere in it)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value: dict[str, Any] = super().to_internal_value(data)
        text = json.dumps(value, ensure_ascii=False)
        if "\\u0000" in text:  # a NUL, escaped: jsonb cannot hold it
            raise serializers.ValidationError("No NUL character (\\u0000) may appear.")
        try:
            text.encode()
        except UnicodeEncodeError:
            raise serializers.ValidationError("Every string must be valid Unicode (no lone surrogate).") from None
        return value


class AnomalyInput(serializers.Serializer[dict[str, Any]]):
    kind = serializers.ChoiceField(choices=REPORTED_KIND_CHOICES)
    lottery_id = StrictIntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)
    simulated_at = Rfc3339DateTimeField(required=False, allow_null=True)
    details = JsonObjectField(required=False, default=dict)
    expires_in_seconds = StrictIntegerField(
        min_value=1, max_value=86_400, required=False, help_text="A stats 506 burst's: forgotten after this long."
    )

    def validate_simulated_at(self, value: datetime | None) -> datetime | None:
        """In UTC, as stored: PostgreSQL takes no offset beyond 15:59, and no date-time past its range."""
        try:
            return None if value is None else value.astimezone(UTC)
        except OverflowError:
            raise serializers.ValidationError("Out of the range of storable date-times.") from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] == AnomalyKind.STATS_506:
            requests = attrs["details"].get("requests")
            if isinstance(requests, bool) or not isinstance(requests, int) or not 1 <= requests <= 100:
                raise serializers.ValidationError({"details": "A 506 burst needs `requests`, an integer 1 to 100."})
        return attrs


class AnomaliesRecordInput(serializers.Serializer[dict[str, Any]]):
    run = StrictCharField(max_length=64, help_text="The generator run that injected them.")
    anomalies = serializers.ListField(child=AnomalyInput(), min_length=1, max_length=1000)

    def validate_anomalies(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sum(1 for item in value if item["kind"] == AnomalyKind.STATS_506) > 1:
            raise serializers.ValidationError("At most one stats 506 burst per call.")
        return value


class AnomaliesRecordOutput(serializers.Serializer[Any]):
    anomalies = AnomalyOutput(many=True)


class AnomaliesApi(StaffOrInternalTokenApi, ListAPIView[InjectedAnomaly]):
    """The ground truth: every anomaly injected, oldest first (staff with `view_injectedanomaly`), and
    the door a load generator reports them by (staff with `record_anomaly`); or the loadgen token.

    Recording a stats 506 burst (`details.requests`: how many consecutive stats requests answer 506) arms it;
    it is refused with 409 while another burst is being answered or while its switch is off.
    """

    required_permission = VIEW_ANOMALIES
    required_permission_by_method: ClassVar[dict[str, str]] = {"get": VIEW_ANOMALIES, "post": RECORD_ANOMALY}
    internal_token_purpose = LOADGEN_TOKEN_PURPOSE
    serializer_class = AnomalyOutput
    filterset_class = AnomalyFilter
    domain_errors_by_method: ClassVar[dict[str, tuple[type[ApplicationError], ...]]] = {
        "post": (LotteryNotFound, StatsBurstActive, AnomalySwitchedOff),
    }

    def get_queryset(self) -> QuerySet[InjectedAnomaly]:
        return anomalies_list()

    @extend_schema(request=AnomaliesRecordInput, responses={201: AnomaliesRecordOutput})
    def post(self, request: Request) -> Response:
        data = AnomaliesRecordInput(data=request.data)
        data.is_valid(raise_exception=True)
        reports = [AnomalyReport(**item) for item in data.validated_data["anomalies"]]
        rows = anomalies_record(run=data.validated_data["run"], reports=reports, actor=self.actor(request))
        return Response(AnomaliesRecordOutput({"anomalies": rows}).data, status=status.HTTP_201_CREATED)


# --- GET /api/v1/loadgen/chaos ------------------------------------------------------------------


@extend_schema_field({"type": "object", "additionalProperties": {"oneOf": [{"type": "number"}, {"type": "boolean"}]}})
class SwitchValuesField(serializers.DictField):
    pass


class ChaosOutput(serializers.Serializer[Any]):
    switches = SwitchValuesField(help_text="Every chaos switch's value now: admin's, else the environment's.")
    set_in_admin = serializers.ListField(child=serializers.CharField(), help_text="The switches admin sets now.")


class ChaosApi(StaffOrInternalTokenApi):
    """The chaos switches as every process sees them now (the generator reads them every few seconds).
    Staff with `core.view_livesetting`, or the loadgen token."""

    required_permission = "core.view_livesetting"
    internal_token_purpose = LOADGEN_TOKEN_PURPOSE

    @extend_schema(responses={200: ChaosOutput})
    def get(self, request: Request) -> Response:
        chaos = sorted(name for name, spec in REGISTRY.items() if spec.chaos)
        values = {name: live(name) for name in chaos}
        in_admin = sorted(LiveSetting.objects.filter(name__in=chaos).values_list("name", flat=True))
        return Response(ChaosOutput({"switches": values, "set_in_admin": in_admin}).data)


# --- POST /api/v1/loadgen/players ------------------------------------------------------------------


class PlayersInput(serializers.Serializer[dict[str, Any]]):
    count = StrictIntegerField(
        min_value=1, max_value=population.MAX_PLAYERS, help_text="Honest players; each gets a cheating twin too."
    )


class ProvisionedPlayerOutput(serializers.Serializer[Any]):
    index = serializers.IntegerField()
    username = serializers.CharField()
    token = serializers.CharField(help_text="The player's API token (Authorization: Token ...).")
    phone_number = serializers.CharField(help_text="As stored, E.164.")
    phone_number_given = serializers.CharField(help_text="As provisioned (a phone twin's in another spelling).")
    external_account_id = serializers.CharField()
    twin_of = serializers.CharField(allow_null=True, help_text="A twin's honest player, whom it copies.")
    shares = serializers.ChoiceField(
        choices=[population.PHONE, population.ACCOUNT], allow_null=True, help_text="What a twin copies."
    )


class PlayersOutput(serializers.Serializer[Any]):
    players = ProvisionedPlayerOutput(many=True)


class PlayersProvisionApi(StaffOrInternalTokenApi):
    """The load generator's players (`loadgen-p00001`...) and their cheating twins (`loadgen-c00001`...), with
    their tokens: created when missing, the same ones on every call. Staff with `provision_players`, or the
    loadgen token. Only these players' tokens are ever given out here."""

    required_permission = PROVISION_PLAYERS
    internal_token_purpose = LOADGEN_TOKEN_PURPOSE

    @extend_schema(request=PlayersInput, responses={200: PlayersOutput})
    def post(self, request: Request) -> Response:
        data = PlayersInput(data=request.data)
        data.is_valid(raise_exception=True)
        players = players_provision(count=data.validated_data["count"], actor=self.actor(request))
        # Thousands of rows of plain strings: built as they are (PlayersOutput documents the shape).
        return Response({"players": [asdict(player) for player in players]})


# --- POST /api/v1/loadgen/trigger ------------------------------------------------------------------


class TriggerInput(serializers.Serializer[dict[str, Any]]):
    entries = StrictIntegerField(min_value=1, max_value=100, required=False, help_text="Default: 20 to 80.")
    window_minutes = StrictIntegerField(
        min_value=1, max_value=1440, required=False, help_text="The entrance window; default 30 to 240 minutes."
    )
    seed = StrictCharField(max_length=64, required=False, help_text="Replays the same plan.")

    def validate_seed(self, value: str) -> str:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise serializers.ValidationError("Must be valid Unicode (no lone surrogate).") from None
        return value


class TriggerOutput(serializers.Serializer[Any]):
    run = serializers.CharField()
    lottery = LotteryDetailOutput()
    sent = serializers.IntegerField(help_text="Entries submitted.")
    accepted = serializers.IntegerField()
    refused = serializers.DictField(child=serializers.IntegerField(), help_text="Refusals by error code.")
    cheats = serializers.IntegerField(help_text="Entries that copied an accepted one's phone number or account.")
    anomalies = AnomalyOutput(many=True)


class TriggerApi(StaffOrInternalTokenApi):
    """One drop with its entries, now, as the first seed's `/trigger`: staff with `trigger_drop` (and
    `lotteries.create_drop`), or the loadgen token. Its cheats and a low participation are in the ground truth."""

    required_permission = TRIGGER_DROP
    internal_token_purpose = LOADGEN_TOKEN_PURPOSE

    @extend_schema(request=TriggerInput, responses={201: TriggerOutput})
    def post(self, request: Request) -> Response:
        data = TriggerInput(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = drop_trigger(actor=self.actor(request), **data.validated_data)
        body = {
            "run": outcome.run,
            "lottery": lottery_detail(lottery_id=outcome.lottery.pk),
            "sent": outcome.sent,
            "accepted": outcome.accepted,
            "refused": dict(outcome.refused),
            "cheats": outcome.cheats,
            "anomalies": outcome.anomalies,
        }
        return Response(TriggerOutput(body).data, status=status.HTTP_201_CREATED)
