"""The one error hierarchy of the platform.

Services raise subclasses of ``ApplicationError``; each carries a stable
``code`` (part of the API contract), the HTTP status it maps to, a message
for people and optional structured ``details``. The DRF exception handler in
``core.api`` renders every error as
``{"error": {"code", "message", "details"}}``; commands print the message.
"""

from typing import Any, ClassVar


class ApplicationError(Exception):
    code: str = "error"
    status_code: int = 400
    default_message: str = "The request could not be completed."
    # True: ``details["retry_after_seconds"]`` goes out as the ``Retry-After`` header too (and is documented).
    sends_retry_after: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details or {}
        super().__init__(self.message)


class NotFound(ApplicationError):
    code = "not_found"
    status_code = 404
    default_message = "Not found."


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status_code = 403
    default_message = "You do not have permission to perform this action."


class Conflict(ApplicationError):
    code = "conflict"
    status_code = 409
    default_message = "The request conflicts with the current state."


class MalformedRequest(ApplicationError):
    """The body cannot be read as the API's JSON: not UTF-8, not JSON, or over a structural limit."""

    code = "malformed_request"
    status_code = 400
    default_message = "The request body is not valid JSON."


class RequestTooLarge(ApplicationError):
    code = "request_too_large"
    status_code = 413
    default_message = "The request body is too large."


class CsrfFailed(ApplicationError):
    """A session-authenticated write without a valid CSRF token (token-authenticated calls need none)."""

    code = "csrf_failed"
    status_code = 403
    default_message = "CSRF verification failed."
