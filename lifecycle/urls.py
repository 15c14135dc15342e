"""The lifecycle app's API: closing a lottery (under /api/v1/)."""

from django.urls import path

from lifecycle.apis import LotteryCloseApi

urlpatterns = [
    path("lotteries/<id:lottery_id>/close", LotteryCloseApi.as_view(), name="lottery-close"),
]
