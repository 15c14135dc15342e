"""/metrics for Prometheus, for the callers allowed to scrape it.

A caller may scrape when its address (``core.clients.client_ip``, so
behind ``API_NUM_PROXIES`` proxies the address in front of them) is in
``METRICS_ALLOWED_CIDRS``, or when it sends ``Authorization: Bearer`` with
``METRICS_TOKEN`` (compared in constant time). Anyone else gets 403 in the
API's error shape, and not a line of metrics.

The answer is every gunicorn worker's counts added up (multiprocess mode,
``core.prometheus``) and the platform's gauges, read at scrape time.
"""

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import prometheus
from core.clients import client_ip


def scrape_allowed(request: HttpRequest) -> bool:
    return prometheus.address_may_scrape(client_ip(request)) or prometheus.token_may_scrape(
        request.headers.get("Authorization", "")
    )


def metrics(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return JsonResponse(prometheus.refusal(), status=403)
    registry = prometheus.scrape_registry(prometheus.PLATFORM)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
