"""Wiring: every app's URLs, the API documents, the probes and /metrics. No view lives here but the probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import metrics
from lottery_site import health

# The API's version 1, one include per app (each app's urls.py lists its endpoints).
api_v1 = [
    path("", include("entries.urls")),
    path("", include("lotteries.urls")),
    path("", include("draws.urls")),
    path("", include("lifecycle.urls")),
    path("", include("pools.urls")),
    path("", include("loadgen.urls")),
    path("", include("analytics.urls")),
]

urlpatterns = [
    # Before admin's own URLs, which would take "operations" for an app's label.
    path("admin/operations/", include("analytics.pages")),
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

handler400 = "core.api.json_bad_request"
handler403 = "core.api.json_permission_denied"
handler404 = "core.api.json_not_found"
handler500 = "core.api.json_server_error"
