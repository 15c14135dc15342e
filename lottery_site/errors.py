"""The one error hierarchy of the platform.

Services raise subclasses of ``ApplicationError``; each carries a stable
``code`` (part of the API contract), the HTTP status it maps to, a message
for people and optional structured ``details``. The DRF exception handler in
``lottery_site.api`` renders every error as
``{"error": {"code", "message", "details"}}``; commands print the message.
"""

from typing import Any


class ApplicationError(Exception):
    code: str = "error"
    status_code: int = 400
    default_message: str = "The request could not be completed."

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
