"""Two middleware at the top of ``MIDDLEWARE``: the request's id, and the API's error shape; Prometheus' last one.

``RequestLogMiddleware`` comes first (below Prometheus' count), above every
middleware that may answer. It takes the client's ``X-Request-ID`` if that is
a plain token (at most 128 letters, digits and ``-_.:``), or makes one (a
UUID); django-structlog binds it to the log context with ``user_id`` and
``ip``, and logs the request's "request_finished" line; the id goes back on
the response whoever answered, refusals and the JSON error shape included.
It also leaves the trace and span ids in the WSGI environ, where gunicorn's
access line (``core.gunicorn_logging``) reads them after the span has ended.

``ApiErrorMiddleware`` comes next, above the middleware that validate the
Host header (``CommonMiddleware``, ``CsrfViewMiddleware``). For a request
under /api/ it refuses, before anything reads the request:

- a Host header outside ``ALLOWED_HOSTS``: 400 ``invalid_host``, logged by
  ``django.security.DisallowedHost`` as Django logs it;
- a ``Content-Length`` that is not a number (400 ``malformed_request``) or
  over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 ``request_too_large``);
- a chunked body (no ``Content-Length``) over that limit: the server must
  have decoded the chunks (gunicorn does, ``wsgi.input_terminated``); the
  body is read up to the limit and handed on as if it had come with its
  length. A server that cannot frame it gets 411 ``length_required``.

Then, whatever answers (a Django HTML page for a 404 in debug mode, a CSRF
page, a 400 from another middleware), an error response that is not JSON
is replaced by the shape, keeping its status, headers and cookies. The
middleware's own work is guarded: if it fails, the request goes on, or the
original response goes out, as if it were not there.

``PrometheusAfterMiddleware`` is django-prometheus' own, with every
``method`` label one of the HTTP methods or ``<invalid method>``: the
latency histogram took the request's method as it came, so each made-up
method (answered 405) added a histogram's worth of series, unauthenticated.
"""

import io
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.log import log_response
from django_prometheus import middleware as prometheus_middleware
from django_structlog.middlewares import RequestMiddleware
from opentelemetry import trace

from core.api import is_api_request, json_error, json_error_for_status, suspicious_request_error
from core.clients import client_address
from core.logs import REQUEST_ID_HEADER, SPAN_ID_ENVIRON, TRACE_ID_ENVIRON

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(header: str | None) -> str:
    """The client's ``X-Request-ID`` if it is a plain token of at most 128 characters, else a new UUID."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return str(uuid.uuid4())


def _request_forgotten(**kwargs: object) -> None:
    structlog.contextvars.clear_contextvars()


class RequestLogMiddleware(RequestMiddleware):
    """django-structlog's request context and "request_finished" line, with a checked request id, echoed."""

    async_capable = False  # WSGI only (gunicorn, runserver)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        super().__init__(get_response)  # type: ignore[arg-type]
        # The response is closed (the WSGI server is done with it, gunicorn's access line written): the thread
        # goes back to its pool, and the next request's lines must not carry this one's ids.
        request_finished.connect(_request_forgotten, dispatch_uid="core.middleware.request_forgotten")

    def __call__(self, request: HttpRequest) -> HttpResponseBase:  # type: ignore[override]
        structlog.contextvars.clear_contextvars()
        # django-structlog reads the header (DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID): only a checked one.
        rid = request.META["HTTP_X_REQUEST_ID"] = request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.__dict__.pop("headers", None)  # request.headers, if a middleware above read it, is built anew
        context = trace.get_current_span().get_span_context()
        ids: dict[str, str] = {}
        if context.is_valid:
            ids["trace_id"] = request.META[TRACE_ID_ENVIRON] = trace.format_trace_id(context.trace_id)
            ids["span_id"] = request.META[SPAN_ID_ENVIRON] = trace.format_span_id(context.span_id)
        response: HttpResponseBase = super().__call__(request)  # type: ignore[assignment]
        response[REQUEST_ID_HEADER] = rid
        # django-structlog cleared the context after its line; Django's own line for a 4xx or 5xx answer
        # ("Not Found: /path") comes after every middleware has returned, the request's span ended too,
        # and belongs to this request all the same: its ids, until the response is closed.
        structlog.contextvars.bind_contextvars(request_id=rid, **ids)
        self.bind_ip(request)
        self.bind_user_id(request)
        return response

    @classmethod
    def bind_ip(cls, request: HttpRequest) -> None:
        # The address throttling and lock-outs use (API_NUM_PROXIES), not one read from headers anyone can send.
        structlog.contextvars.bind_contextvars(ip=client_address(request))


_KEPT_OUT = frozenset({"content-type", "content-length", "content-encoding", "content-disposition"})


def _is_json(response: HttpResponseBase) -> bool:
    media_type = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _refused(response: JsonResponse) -> JsonResponse:
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ApiErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not is_api_request(request):
            return self.get_response(request)
        try:
            refusal = self.refuse(request)
        except Exception:
            logger.exception("checking a request under /api/ failed; it goes on unchecked")
            refusal = None
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if response.status_code < 400 or _is_json(response):
            return response
        try:
            return self.as_json(response)
        except Exception:
            logger.exception("an error response under /api/ could not be turned into JSON; sent as it was")
            return response

    def refuse(self, request: HttpRequest) -> JsonResponse | None:
        """The answer for a request refused before Django reads it, or None to let it through."""
        try:
            request.get_host()
        except DisallowedHost as error:
            code, message, status_code, details = suspicious_request_error(error)
            response = _refused(json_error(code, message, status_code, details))
            log_response(
                str(error),
                exception=error,
                request=request,
                response=response,
                level="error",
                logger=logging.getLogger("django.security.DisallowedHost"),
            )
            return response

        limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw_length = request.META.get("CONTENT_LENGTH")
        if raw_length:
            try:
                length = int(raw_length)
            except ValueError:
                length = -1
            if length < 0:
                return _refused(
                    json_error(
                        "malformed_request",
                        "The Content-Length header is not a number of bytes.",
                        400,
                        {"header": "Content-Length"},
                    )
                )
            if limit is not None and length > limit:
                return self.too_large(limit)
        elif request.META.get("HTTP_TRANSFER_ENCODING"):
            return self.read_chunked(request, limit)
        return None

    def read_chunked(self, request: HttpRequest, limit: int | None) -> JsonResponse | None:
        """Read a body sent without its length, up to the limit, and hand it on with its length."""
        if not isinstance(request, WSGIRequest) or not request.environ.get("wsgi.input_terminated"):
            return _refused(
                json_error(
                    "length_required", "Send the body with a Content-Length header.", 411, {"header": "Content-Length"}
                )
            )
        stream = request.environ["wsgi.input"]
        chunks: list[bytes] = []
        size = 0
        while limit is None or size <= limit:
            chunk = stream.read(65536 if limit is None else min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if limit is not None and size > limit:
            return self.too_large(limit)
        body = b"".join(chunks)
        request._stream = io.BytesIO(body)
        request.META["CONTENT_LENGTH"] = str(len(body))
        return None

    @staticmethod
    def too_large(limit: int) -> JsonResponse:
        return _refused(
            json_error("request_too_large", f"The request body is over {limit} bytes.", 413, {"max_bytes": limit})
        )

    @staticmethod
    def as_json(response: HttpResponseBase) -> JsonResponse:
        replacement = json_error_for_status(response.status_code)
        for header, value in response.items():
            if header.lower() not in _KEPT_OUT:
                replacement[header] = value
        replacement.cookies = response.cookies
        return replacement


class PrometheusAfterMiddleware(prometheus_middleware.PrometheusAfterMiddleware):
    """django-prometheus' count of answers, with a bounded ``method`` label on every metric (see the module)."""

    def label_metric(self, metric: Any, request: HttpRequest, response: Any = None, **labels: Any) -> Any:
        if "method" in labels:
            labels["method"] = self._method(request)
        return super().label_metric(metric, request, response, **labels)
