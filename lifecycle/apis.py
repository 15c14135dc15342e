"""The life cycle's doors: POST /api/v1/lotteries/{id}/close (staff with close_lottery, or the close token)
and POST /api/v1/drops (staff with create_drop, or the drops token)."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import REPLAYED_HEADER, idempotency_key, idempotency_parameters
from core.errors import ApplicationError
from core.fields import Rfc3339DateTimeField, StrictBooleanField, StrictCharField, StrictIntegerField
from core.permissions import StaffOrInternalTokenApi
from entries.models import Player
from lifecycle.services import drop_request, lottery_close
from lotteries.apis import LotteryDetailOutput
from lotteries.errors import DropKeyReused, InvalidLottery, LotteryNotDue, LotteryNotFound, LotteryNotOpen
from lotteries.models import CLOSE_LOTTERY, CREATE_DROP, TransitionSource
from lotteries.selectors import lottery_detail
from lotteries.services import DROP_MAX_ALTERNATES, DROP_MAX_QUANTITY


class LotteryCloseApi(StaffOrInternalTokenApi):
    """Close and draw a lottery now. Staff with `close_lottery`, or the close token in X-Internal-Token.

    Refused before the end of the entrance window unless ``force`` is true
    (the early close is recorded; staff also need `force_close_lottery`).
    Idempotent: closing a drawn lottery returns it unchanged.
    """

    required_permission = CLOSE_LOTTERY
    internal_token_purpose = "close"  # noqa: S105 (the name of a purpose, not a secret)
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (LotteryNotFound, LotteryNotDue, LotteryNotOpen)

    @extend_schema_serializer(component_name="LotteryCloseInput")
    class Input(serializers.Serializer[dict[str, Any]]):
        force = StrictBooleanField(default=False, help_text="Close before the end of the entrance window.")

    @extend_schema_serializer(component_name="LotteryCloseOutput")
    class Output(serializers.Serializer[Any]):
        lottery = LotteryDetailOutput()
        changed = serializers.BooleanField(help_text="False when the lottery was already drawn or cancelled.")

    @extend_schema(request=Input, responses={200: Output})
    def post(self, request: Request, lottery_id: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        actor = self.actor(request)
        assert actor is None or isinstance(actor, Player)
        outcome = lottery_close(
            lottery_id=lottery_id, source=TransitionSource.API, actor=actor, force=data.validated_data["force"]
        )
        lottery = lottery_detail(lottery_id=outcome.lottery.pk)
        return Response(self.Output({"lottery": lottery, "changed": outcome.changed}).data)


_NOT_BLANK = RegexValidator(r"\S", "Must not be blank.")


def _storable(value: datetime) -> datetime:
    """A date-time the database can store: in UTC (PostgreSQL takes no offset beyond 15:59), or a validation
    error, not an overflow."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise serializers.ValidationError("Out of the range of storable date-times.") from None


class DropCreateApi(StaffOrInternalTokenApi):
    """Create a drop: a lottery of a prize with a quantity and an entrance window. Staff with `create_drop`,
    or the drops token in X-Internal-Token.

    `opens_at` (default now) may lie ahead: the drop is then `scheduled`,
    refuses ballots with 409 `lottery_not_open`, and opens at that moment. It
    closes and is drawn within seconds of `closes_at`: `winners_count`
    (default: the quantity) ranked winners, then `alternates_count` ranked
    alternates from the same shuffle. Its seed commitment is published at once.

    With an `Idempotency-Key`, a retry of the same terms returns the first
    drop (201, `Idempotent-Replayed: true`) instead of creating another; the
    same key with other terms is refused (422 `idempotency_key_reused`).
    """

    required_permission = CREATE_DROP
    internal_token_purpose = "drops"  # noqa: S105 (the name of a purpose, not a secret)
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (InvalidLottery, DropKeyReused)

    @extend_schema_serializer(component_name="DropCreateInput")
    class Input(serializers.Serializer[dict[str, Any]]):
        title = StrictCharField(max_length=200, validators=[_NOT_BLANK])
        prize = StrictCharField(max_length=200, validators=[_NOT_BLANK], help_text="The product won.")
        prize_quantity = StrictIntegerField(
            min_value=1, max_value=DROP_MAX_QUANTITY, help_text="Units of the prize: one per winner."
        )
        opens_at = Rfc3339DateTimeField(required=False, help_text="Start of the entrance window; default now.")
        closes_at = Rfc3339DateTimeField(help_text="End of the entrance window, in the future.")
        winners_count = StrictIntegerField(
            min_value=1, max_value=DROP_MAX_QUANTITY, required=False, help_text="At most the quantity; default it."
        )
        alternates_count = StrictIntegerField(min_value=0, max_value=DROP_MAX_ALTERNATES, default=0)

        def validate_opens_at(self, value: datetime) -> datetime:
            return _storable(value)

        def validate_closes_at(self, value: datetime) -> datetime:
            return _storable(value)

    @extend_schema(
        request=Input,
        parameters=idempotency_parameters(unique_per="caller (staff member, or the drops token)", status_code=201),
        responses={201: LotteryDetailOutput},
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        terms = data.validated_data
        actor = self.actor(request)
        assert actor is None or isinstance(actor, Player)
        outcome = drop_request(
            idempotency_key=key,
            title=terms["title"],
            prize=terms["prize"],
            prize_quantity=terms["prize_quantity"],
            opens_at=terms.get("opens_at"),
            closes_at=terms["closes_at"],
            winners_count=terms.get("winners_count"),
            alternates_count=terms["alternates_count"],
            source=TransitionSource.API,
            actor=actor,
        )
        detail = LotteryDetailOutput(lottery_detail(lottery_id=outcome.lottery.pk)).data
        response = Response(detail, status=status.HTTP_201_CREATED)
        if outcome.replayed:
            response[REPLAYED_HEADER] = "true"
        return response
