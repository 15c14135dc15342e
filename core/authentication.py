"""The API's authentication classes (``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``)."""

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core.errors import CsrfFailed


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session (staff in Swagger UI); a write without its CSRF token is refused as ``csrf_failed``.

    Token-authenticated calls need no CSRF token: DRF checks it only for a session.
    """

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as error:
            raise CsrfFailed(str(error.detail)) from None
