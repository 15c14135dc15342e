"""Login lock-out: repeated wrong passwords lock one (username, client address) pair for a while.

django-axes counts failed logins in the database (``AccessAttempt`` rows,
admin "Access attempts") wherever a password is checked with
``django.contrib.auth.authenticate``: admin's login form and the API token
endpoint. ``LOGIN_FAILURE_LIMIT`` failures of one username from one client
address lock that pair out: the attempt that reaches the limit and every
attempt after it are refused with 429, the right password too, until
``LOGIN_COOLOFF_MINUTES`` have passed without an attempt (each refused
attempt starts the cool-off again). Failures further apart than the cool-off
are forgotten. Only the pair is locked: the same username from another
address, or another username from this one, still gets in, so nobody can lock
someone else out from elsewhere. The client address is
``core.clients.client_address`` (``API_NUM_PROXIES`` aware).
"""

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from prometheus_client import Counter
from rest_framework.request import Request

from core.api import error_body
from entries.errors import LoginLockedOut

lockouts_total = Counter(
    "lottery_login_lockouts_total",
    "Times a (username, client address) pair was locked out after repeated wrong passwords",
    ["door"],
)

RETRY_AFTER_HEADER = "Retry-After"


def door(request: HttpRequest | Request) -> str:
    """Where the password was tried: ``api`` (the token endpoint) or ``admin``."""
    return "api" if request.path.startswith("/api/") else "admin"


def is_locked_out(request: HttpRequest | Request) -> bool:
    """True when axes refused this request's login, or locked its pair out on it."""
    return bool(getattr(request, "axes_locked_out", False))


def retry_after_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_error() -> LoginLockedOut:
    seconds = retry_after_seconds()
    return LoginLockedOut(
        f"Too many failed logins for this username from this address; try again in {seconds // 60} minutes.",
        details={"retry_after_seconds": seconds, "failure_limit": settings.AXES_FAILURE_LIMIT},
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """What a locked-out login gets (``AXES_LOCKOUT_CALLABLE``): the API's error shape, or admin's page."""
    error = lockout_error()
    response: HttpResponse
    if door(request) == "api":
        response = JsonResponse(error_body(error.code, error.message, error.details), status=error.status_code)
    else:
        context = {"title": "Too many failed logins", "message": error.message, **error.details}
        response = render(request, "admin/login_locked_out.html", context, status=error.status_code)
    response[RETRY_AFTER_HEADER] = str(error.details["retry_after_seconds"])
    return response


@receiver(user_locked_out)
def _count_lockout(sender: object, request: HttpRequest | Request, **kwargs: Any) -> None:
    # axes signals every refused attempt of a locked pair; count the one that locked it.
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is not None and failures > settings.AXES_FAILURE_LIMIT:
        return
    lockouts_total.labels(door=door(request)).inc()
