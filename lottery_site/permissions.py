import hmac

from django.conf import settings
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
