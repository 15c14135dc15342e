"""The site's URLs, and two that fail: a view that raises, and one that answers 503 (``tests/test_logs.py``)."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def raising(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view broke")


def unavailable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("down for a while", status=503)


urlpatterns = [
    path("api/v1/test/raising", raising),
    path("api/v1/test/unavailable", unavailable),
    path("", include("lottery_site.urls")),
]
handler500 = "core.api.json_server_error"
