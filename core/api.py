"""API plumbing shared by every app: the error shape, pagination, JSON 400/403/404/500 and CSRF failures,
and ``represent`` for the hot paths' output.

Every error leaves the API as ``{"error": {"code", "message", "details"}}``:
DRF's exceptions through ``exception_handler``, Django's own refusals
through the handlers below (``urls.py``, ``CSRF_FAILURE_VIEW``), and
whatever else under ``/api/`` through ``core.middleware.ApiErrorMiddleware``.
"""

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.log import log_response
from django.views import csrf, defaults
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError
from core.fields import QueryIntegerField

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=Model)
_Row = TypeVar("_Row")

MAX_PAGE_SIZE = 500

# Stable codes for DRF's own exceptions (their default codes are not all ours).
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


# The code of an error known only by its status (an HTML page from Django turned into the shape).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def is_api_request(request: HttpRequest) -> bool:
    """True under /api/, where every answer is JSON (admin and the rest keep Django's pages)."""
    path = request.path_info
    return path == "/api" or path.startswith("/api/")


def json_error(code: str, message: str, status_code: int, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


def json_error_for_status(status_code: int) -> JsonResponse:
    """The error shape for a bare status: its stable code if it has one, and the status's phrase."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    return json_error(STATUS_CODES.get(status_code, "error"), f"{phrase}.", status_code)


def suspicious_request_error(exception: SuspiciousOperation) -> tuple[str, str, int, dict[str, Any]]:
    """(code, message, status, details) for what Django refuses as a suspicious request."""
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return "request_too_large", "The request body is too large.", 413, {"max_bytes": limit}
    if isinstance(exception, TooManyFieldsSent):
        maximum = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return "malformed_request", "The form has too many fields.", 400, {"limit": "fields", "max": maximum}
    if isinstance(exception, TooManyFilesSent):
        maximum = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return "malformed_request", "The form has too many files.", 400, {"limit": "files", "max": maximum}
    if isinstance(exception, DisallowedHost):
        return "invalid_host", "The Host header names a host this service does not serve.", 400, {}
    return "bad_request", "The request was refused as malformed or suspicious.", 400, {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render domain and DRF errors, and Django's refusals of a body (too big, too many fields), in the one shape.

    Anything else is left to Django (a real 500, logged with its traceback):
    bad input never reaches that far because serializers and services raise
    the errors above.
    """
    if isinstance(exc, ApplicationError):
        rendered = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        if exc.sends_retry_after and "retry_after_seconds" in exc.details:
            rendered["Retry-After"] = str(exc.details["retry_after_seconds"])
        return rendered

    if isinstance(exc, SuspiciousOperation):
        return _suspicious_response(exc, context.get("request"))

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response

    code = next((c for klass, c in _DRF_CODES.items() if isinstance(exc, klass)), "error")
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid."
        details = {"fields": exc.detail} if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    elif isinstance(exc, exceptions.Throttled):
        message = "Too many requests."
        details = {"retry_after_seconds": getattr(exc, "wait", None)}
    else:
        message = str(exc.detail)
    response.data = error_body(code, message, details)
    return response


def _suspicious_response(exc: SuspiciousOperation, request: Request | HttpRequest | None) -> Response:
    """What Django refuses while reading a body (too big, too many form fields), logged by django.security."""
    code, message, status_code, details = suspicious_request_error(exc)
    response = Response(error_body(code, message, details), status=status_code)
    log_response(
        str(exc),
        exception=exc,
        request=request._request if isinstance(request, Request) else request,
        response=response,
        level="error",
        logger=logging.getLogger(f"django.security.{exc.__class__.__name__}"),
    )
    return response


class Pagination(PageNumberPagination):
    """``page`` and ``page_size`` (at most 500); anything else in them is a 400, a page past the last a 404."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    last_page_strings = ()  # "?page=last" is not an integer: refused like any other word

    class Input(serializers.Serializer[dict[str, int]]):
        page = QueryIntegerField(required=False, min_value=1)
        page_size = QueryIntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

    def paginate_queryset(
        self, queryset: QuerySet[_Model, _Row] | Sequence[_Row], request: Request, view: APIView | None = None
    ) -> list[_Row] | None:
        given = {name: request.query_params[name] for name in ("page", "page_size") if name in request.query_params}
        self.Input(data=given).is_valid(raise_exception=True)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        return [
            {
                "name": "page",
                "required": False,
                "in": "query",
                "description": "A page number, from 1; a page past the last is a 404.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]


# Django's error handlers (urls.py): the shape under /api/, Django's pages elsewhere (admin).


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api_request(request):
        return defaults.bad_request(request, exception or SuspiciousOperation())
    if isinstance(exception, SuspiciousOperation):
        code, message, status_code, details = suspicious_request_error(exception)
        return json_error(code, message, status_code, details)
    return json_error("bad_request", "The request is malformed.", status.HTTP_400_BAD_REQUEST)


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api_request(request):
        return defaults.permission_denied(request, exception or DjangoPermissionDenied())
    return json_error("permission_denied", "You do not have permission to perform this action.", 403)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 in the API's error shape under /api/, Django's page elsewhere (admin)."""
    if not is_api_request(request):
        return defaults.page_not_found(request, exception or Http404())
    return json_error("not_found", "Not found.", status.HTTP_404_NOT_FOUND)


def json_server_error(request: HttpRequest) -> HttpResponse:
    if not is_api_request(request):
        return defaults.server_error(request)
    return json_error(
        "internal_error", "An unexpected error occurred; it has been logged.", status.HTTP_500_INTERNAL_SERVER_ERROR
    )


_prototypes: dict[type[serializers.Serializer[Any]], serializers.Serializer[Any]] = {}


def represent(output: type[serializers.Serializer[Any]], instance: Any) -> dict[str, Any]:
    """What ``output(instance).data`` is, for a hot path: the serializer's fields are built once, not per call.

    DRF builds a serializer's fields anew for each instance, and a
    ModelSerializer introspects its model each time: a ballot's output took
    about 0.3 ms that way, a tenth of that from one prototype. The serializer
    class stays the one declaration of the shape and of the OpenAPI schema.
    Only for an output serializer that needs no context (no request, no
    hyperlinks): the prototype has none, and its fields are shared by every
    call (each field's ``to_representation`` reads the instance only).
    """
    prototype = _prototypes.get(output)
    if prototype is None:
        prototype = output()
        _ = prototype.fields  # built now, once (a race builds two; either serves)
        _prototypes[output] = prototype
    data: dict[str, Any] = prototype.to_representation(instance)
    return data


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: ``csrf_failed`` under /api/, Django's page elsewhere."""
    if not is_api_request(request):
        return csrf.csrf_failure(request, reason)
    message = f"CSRF verification failed: {reason}" if reason else "CSRF verification failed."
    return json_error("csrf_failed", message, status.HTTP_403_FORBIDDEN)


# --- Idempotency-Key: a retried POST returns its first result -----------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # 1 to 255 printable ASCII characters, no space
REPLAYED_HEADER = "Idempotent-Replayed"


class _IdempotencyKeyInput(serializers.Serializer[dict[str, str]]):
    idempotency_key = serializers.RegexField(IDEMPOTENCY_KEY_PATTERN, required=False)


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, or None when it sends none; a malformed one is a 400 ``validation_error``."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:  # most calls send none: nothing to validate
        return None
    headers = _IdempotencyKeyInput(data={"idempotency_key": key})
    headers.is_valid(raise_exception=True)
    validated: str = headers.validated_data["idempotency_key"]
    return validated


def idempotency_parameters(*, unique_per: str, status_code: int) -> list[Any]:
    """The OpenAPI description of the Idempotency-Key header and of the replay's answer header."""
    from drf_spectacular.utils import OpenApiParameter

    return [
        OpenApiParameter(
            IDEMPOTENCY_HEADER,
            {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "minLength": 1, "maxLength": 255},
            OpenApiParameter.HEADER,
            description=(
                f"Optional, unique per {unique_per}: a retry with the same key returns the first result. "
                "1 to 255 printable ASCII characters, no spaces; sent empty, it is refused."
            ),
        ),
        OpenApiParameter(
            REPLAYED_HEADER,
            {"type": "string", "enum": ["true"]},
            OpenApiParameter.HEADER,
            description="Present when this is the first result of the same Idempotency-Key, replayed.",
            response=[status_code],
        ),
    ]
