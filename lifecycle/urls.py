"""The lifecycle app's API: closing a lottery, creating a drop (under /api/v1/)."""

from django.urls import path

from lifecycle.apis import DropCreateApi, LotteryCloseApi

urlpatterns = [
    path("lotteries/<id:lottery_id>/close", LotteryCloseApi.as_view(), name="lottery-close"),
    path("drops", DropCreateApi.as_view(), name="drop-create"),
]
