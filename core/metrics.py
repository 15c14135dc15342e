"""/metrics for Prometheus, for the callers allowed to scrape it.

A caller may scrape when its address (``core.clients.client_ip``, so
behind ``API_NUM_PROXIES`` proxies the address in front of them) is in
``METRICS_ALLOWED_CIDRS``, or when it sends ``Authorization: Bearer`` with
``METRICS_TOKEN`` (compared in constant time). Anyone else gets 403 in the
API's error shape, and not a line of metrics.
"""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView

from core.api import error_body
from core.clients import client_ip


def _has_token(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _from_allowed_network(request: HttpRequest) -> bool:
    address = client_ip(request)
    if address is None:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in settings.METRICS_ALLOWED_CIDRS)


def scrape_allowed(request: HttpRequest) -> bool:
    return _from_allowed_network(request) or _has_token(request)


def metrics(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return JsonResponse(
            error_body("permission_denied", "Metrics are for the monitoring network or its token."), status=403
        )
    response: HttpResponse = ExportToDjangoView(request)
    return response
