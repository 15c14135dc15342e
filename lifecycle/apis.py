"""The close endpoint: POST /api/v1/lotteries/{id}/close (staff with close_lottery, or the close token)."""

from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError
from core.fields import StrictBooleanField
from core.permissions import StaffOrInternalTokenApi
from entries.models import Player
from lifecycle.services import lottery_close
from lotteries.apis import LotteryDetailOutput
from lotteries.errors import LotteryNotDue, LotteryNotFound
from lotteries.models import CLOSE_LOTTERY, TransitionSource
from lotteries.selectors import lottery_detail


class LotteryCloseApi(StaffOrInternalTokenApi):
    """Close and draw a lottery now. Staff with `close_lottery`, or the close token in X-Internal-Token.

    Refused before the end of the entrance window unless ``force`` is true
    (the early close is recorded; staff also need `force_close_lottery`).
    Idempotent: closing a drawn lottery returns it unchanged.
    """

    required_permission = CLOSE_LOTTERY
    internal_token_purpose = "close"  # noqa: S105 (the name of a purpose, not a secret)
    domain_errors: ClassVar[tuple[type[ApplicationError], ...]] = (LotteryNotFound, LotteryNotDue)

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
