import hmac
from typing import NoReturn

from django.conf import settings
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 (a header name, not a secret)


def has_internal_token(request: Request) -> bool:
    """True when the request carries INTERNAL_CLOSE_TOKEN (compared in constant time)."""
    expected = settings.INTERNAL_CLOSE_TOKEN
    given = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class IsStaffOrInternalToken(BasePermission):
    message = "Staff, or a valid X-Internal-Token, is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff) or has_internal_token(request)


class StaffOrInternalTokenApi(APIView):
    """Base of the views not meant for players: anyone but staff or the internal token gets 403.

    Even an anonymous caller gets 403 rather than DRF's 401: there is no
    player credential that would help.
    """

    permission_classes = [IsStaffOrInternalToken]

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        raise exceptions.PermissionDenied(detail=message, code=code)
