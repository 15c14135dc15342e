from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from draws.apis import DrawDetailApi, DrawVerificationApi, LotteryWinnersApi, WinnersOfDayApi
from entries.apis import BallotSubmitApi, MyBallotsApi, PingApi, StakeProduceApi, TokenObtainApi
from lotteries.apis import LotteryCloseApi, LotteryDetailApi, LotteryListApi
from lottery_site import health, metrics
from lottery_site.converters import DatabaseIdConverter

register_converter(DatabaseIdConverter, "id")

api_v1 = [
    path("auth/token", TokenObtainApi.as_view(), name="auth-token"),
    path("ping", PingApi.as_view(), name="ping"),
    path("lotteries", LotteryListApi.as_view(), name="lottery-list"),
    path("lotteries/<id:lottery_id>", LotteryDetailApi.as_view(), name="lottery-detail"),
    path("lotteries/<id:lottery_id>/close", LotteryCloseApi.as_view(), name="lottery-close"),
    path("lotteries/<id:lottery_id>/ballots", BallotSubmitApi.as_view(), name="ballot-submit"),
    path("lotteries/<id:lottery_id>/winners", LotteryWinnersApi.as_view(), name="lottery-winners"),
    path("ballots", MyBallotsApi.as_view(), name="my-ballots"),
    path("stakes", StakeProduceApi.as_view(), name="stake-produce"),
    path("winners", WinnersOfDayApi.as_view(), name="winners"),
    path("draws/<id:draw_id>", DrawDetailApi.as_view(), name="draw-detail"),
    path("draws/<id:draw_id>/verification", DrawVerificationApi.as_view(), name="draw-verification"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Split: the page loads its start-up script from this same view (?script), so nothing runs inline.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="lottery_site/swagger_ui.html"),
        name="swagger-ui",
    ),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics, name="prometheus-django-metrics"),
]

handler400 = "lottery_site.api.json_bad_request"
handler403 = "lottery_site.api.json_permission_denied"
handler404 = "lottery_site.api.json_not_found"
handler500 = "lottery_site.api.json_server_error"
