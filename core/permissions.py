"""Who may call the API's staff doors: a staff member holding the door's
permission, or a service presenting the internal token of the door's purpose.

Internal tokens are one per purpose (``INTERNAL_TOKENS`` in settings: close,
stakes, ...) so that a leaked token opens one door only, and each purpose
accepts a current and a next value, so a token can be rotated without
downtime: set the next value, move the callers over, then make it current.
"""

import hmac
from typing import ClassVar, NoReturn

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.authorization import may
from core.errors import PermissionDenied

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 (a header name, not a secret)


def has_internal_token(request: Request, purpose: str) -> bool:
    """True when the request carries a current or next internal token of ``purpose``.

    Every configured value is compared, each in constant time, so the answer
    takes the same time whichever value (if any) matched.
    """
    given = request.headers.get(INTERNAL_TOKEN_HEADER, "").encode()
    if not given:
        return False
    matched = False
    for expected in settings.INTERNAL_TOKENS.get(purpose, ()):
        matched |= hmac.compare_digest(given, expected.encode())
    return matched


def acting_staff(request: Request) -> AbstractUser | None:
    """The staff member behind a request, or ``None`` when a service called with its internal token."""
    user = request.user
    return user if isinstance(user, AbstractUser) and user.is_authenticated and user.is_staff else None


class HasPermissionOrInternalToken(BasePermission):
    """Passes a staff member with the view's ``required_permission``, or its purpose's internal token."""

    message = "A staff member with this action's permission, or the internal token of its purpose, is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        assert isinstance(view, StaffOrInternalTokenApi)
        staff = acting_staff(request)
        if staff is not None and may(staff, view.permission_for(request)):
            return True
        return has_internal_token(request, view.internal_token_purpose)


class StaffOrInternalTokenApi(APIView):
    """Base of the views not meant for players.

    A subclass names the permission a staff caller needs (per method, where
    its methods differ, in ``required_permission_by_method``) and the purpose
    of the internal token a service may present instead. Anyone else gets 403,
    even an anonymous caller (rather than DRF's 401): no player credential
    would help. The view passes ``acting_staff(request)`` to its service,
    which checks the permission again (``core.authorization``):
    pass it ``self.actor(request)``.
    """

    required_permission: ClassVar[str]
    required_permission_by_method: ClassVar[dict[str, str]] = {}  # "get" -> permission, where methods differ
    internal_token_purpose: ClassVar[str]
    permission_classes = [HasPermissionOrInternalToken]

    def permission_for(self, request: Request) -> str:
        """The permission a staff caller of this request's method needs."""
        return self.required_permission_by_method.get((request.method or "").lower(), self.required_permission)

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        if acting_staff(request) is not None:
            # A staff member is told which permission they lack, as the services tell them.
            raise PermissionDenied(message, details={"permission": self.permission_for(request)})
        raise exceptions.PermissionDenied(detail=message, code=code)

    def actor(self, request: Request) -> AbstractUser | None:
        """Who acts, for the service and its audit record: the staff member when their permission let them
        in, else ``None``, the platform, vouched for by the internal token."""
        staff = acting_staff(request)
        return staff if staff is not None and may(staff, self.permission_for(request)) else None
