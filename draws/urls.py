"""The draws app's API: winners, draw records, verification (under /api/v1/)."""

from django.urls import path

from draws.apis import AwardClaimApi, DrawDetailApi, DrawVerificationApi, LotteryWinnersApi, WinnersOfDayApi

urlpatterns = [
    path("lotteries/<id:lottery_id>/winners", LotteryWinnersApi.as_view(), name="lottery-winners"),
    path("winners", WinnersOfDayApi.as_view(), name="winners"),
    path("draws/<id:draw_id>", DrawDetailApi.as_view(), name="draw-detail"),
    path("draws/<id:draw_id>/verification", DrawVerificationApi.as_view(), name="draw-verification"),
    path("awards/<id:award_id>/claim", AwardClaimApi.as_view(), name="award-claim"),
]
