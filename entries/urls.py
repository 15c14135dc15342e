"""The entries app's API: tokens, ballots, my notification settings (under /api/v1/)."""

from django.urls import path

from entries.apis import BallotSubmitApi, MyBallotsApi, MyNotificationsApi, PingApi, TokenObtainApi

urlpatterns = [
    path("auth/token", TokenObtainApi.as_view(), name="auth-token"),
    path("ping", PingApi.as_view(), name="ping"),
    path("lotteries/<id:lottery_id>/ballots", BallotSubmitApi.as_view(), name="ballot-submit"),
    path("ballots", MyBallotsApi.as_view(), name="my-ballots"),
    path("me/notifications", MyNotificationsApi.as_view(), name="my-notifications"),
]
