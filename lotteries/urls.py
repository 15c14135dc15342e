"""The lotteries app's API: list, detail, close (under /api/v1/)."""

from django.urls import path

from lotteries.apis import LotteryCloseApi, LotteryDetailApi, LotteryListApi

urlpatterns = [
    path("lotteries", LotteryListApi.as_view(), name="lottery-list"),
    path("lotteries/<id:lottery_id>", LotteryDetailApi.as_view(), name="lottery-detail"),
    path("lotteries/<id:lottery_id>/close", LotteryCloseApi.as_view(), name="lottery-close"),
]
