"""The lotteries app's API: list and detail (under /api/v1/)."""

from django.urls import path

from lotteries.apis import LotteryDetailApi, LotteryListApi

urlpatterns = [
    path("lotteries", LotteryListApi.as_view(), name="lottery-list"),
    path("lotteries/<id:lottery_id>", LotteryDetailApi.as_view(), name="lottery-detail"),
]
