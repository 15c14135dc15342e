"""The operations page: the platform today at a glance, for staff with ``analytics.view_business_metrics``."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from analytics.models import VIEW_BUSINESS_METRICS
from analytics.selectors import operations_overview


@staff_member_required
def operations(request: HttpRequest) -> HttpResponse:
    """Open lotteries and next closes, the event pipeline, SMS failures, reconciliation, the last 48 hours' charts."""
    if not request.user.has_perm(VIEW_BUSINESS_METRICS):
        raise PermissionDenied
    overview = operations_overview()
    context = {**admin.site.each_context(request), "title": "Operations", "overview": overview}
    return TemplateResponse(request, "analytics/operations.html", context)
