"""The one check behind every staff action, called by the services themselves.

Admin and the API check the same permission first (to hide or refuse the
door), but the service entry point is where the rule holds for every caller.
``actor`` is the staff member acting; ``None`` is the platform acting on its
own behalf: beat, a management command run by an operator on the host, a
consumer, or a caller that proved itself with the internal token of that
purpose. Only those trusted paths pass ``None``.
"""

from django.contrib.auth.models import AbstractUser

from core.errors import PermissionDenied


def may(actor: AbstractUser | None, permission: str) -> bool:
    """True when ``actor`` (``None``: the platform) may use ``permission`` ("app_label.codename")."""
    if actor is None:
        return True
    return bool(actor.is_active and actor.is_staff and actor.has_perm(permission))


def require_permission(actor: AbstractUser | None, permission: str) -> None:
    """Raise ``PermissionDenied`` (403 ``permission_denied``) unless ``actor`` may use ``permission``."""
    if not may(actor, permission):
        raise PermissionDenied("You do not have the permission this action needs.", details={"permission": permission})


def actor_id(actor: AbstractUser | None) -> int | None:
    """The staff member's key for an audit record (``None``: the platform acted)."""
    return None if actor is None else int(actor.pk)
