"""Every answer under /api/ in the API's error shape, whichever layer refuses the request.

``ApiErrorMiddleware`` sits at the top of ``MIDDLEWARE``, above the
middleware that validate the Host header (``CommonMiddleware``,
``CsrfViewMiddleware``). For a request under /api/ it refuses, before
anything reads the request:

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
"""

import io
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.log import log_response

from core.api import is_api_request, json_error, json_error_for_status, suspicious_request_error

logger = logging.getLogger(__name__)

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
