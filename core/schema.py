"""The OpenAPI document: error responses and security derived from what each view really does.

``ApiSchema`` (``DEFAULT_SCHEMA_CLASS``) adds to every operation the error
responses it can give, each with the one ``Error`` component:

- 400 ``validation_error`` when it takes query parameters, headers or a body;
  ``malformed_request`` and 415 ``unsupported_media_type`` when it takes a body;
- 413 ``request_too_large`` on every operation: a body over the limit is
  refused before routing, whatever the method;
- 401 when the view authenticates (a wrong ``Authorization`` header is a 401
  even where anyone may call), ``not_authenticated`` too when its permissions
  refuse anonymous callers with DRF's 401;
- 403 ``permission_denied`` when a permission can refuse, ``csrf_failed``
  for a session's unsafe request without its CSRF token;
- 404 ``not_found`` for path ids and pages past the last;
- 406 ``not_acceptable`` (an ``Accept`` header JSON does not satisfy);
- 429 ``throttled`` when the view is throttled;
- and the domain errors the view lists in ``domain_errors`` (or, per method,
  in ``domain_errors_by_method``), by their status.

Views based on ``StaffOrInternalTokenApi`` also accept the ``internalToken``
security scheme (the ``X-Internal-Token`` header).
"""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from core import api
from core.errors import ApplicationError
from core.permissions import INTERNAL_TOKEN_HEADER, StaffOrInternalTokenApi

ERROR_COMPONENT = "Error"
INTERNAL_TOKEN_SCHEME = "internalToken"  # noqa: S105 (a scheme name, not a secret)

# Codes the platform's plumbing gives, whatever the view: what each means.
GENERIC_CODES: dict[str, str] = {
    "validation_error": "a parameter, header or body field is invalid; `details.fields` names each",
    "malformed_request": "the body cannot be parsed (not JSON, or nested too deep)",
    "authentication_failed": "the `Authorization` header carries an unknown or malformed token",
    "not_authenticated": "no credentials were given",
    "permission_denied": "the caller may not do this",
    "csrf_failed": "a write signed in with a session (not a token) lacks its CSRF token",
    "not_found": "no such id, or a page past the last",
    "not_acceptable": "the `Accept` header asks for something other than JSON",
    "request_too_large": "the body is larger than the platform accepts",
    "unsupported_media_type": "the body's `Content-Type` is not one the operation takes",
    "throttled": "too many requests; `details.retry_after_seconds` says when to retry",
}
# Codes that exist but no operation documents: a method the path lacks, a Host header this service does not
# serve, a chunked body runserver cannot read, a bug.
UNDOCUMENTED_CODES = ("method_not_allowed", "invalid_host", "bad_request", "length_required", "internal_error")

# Permissions that only ever ask for an authenticated caller (never refuse one).
_AUTHENTICATED_ONLY = (permissions.IsAuthenticated, permissions.IsAuthenticatedOrReadOnly)


def _application_errors(root: type[ApplicationError] = ApplicationError) -> Iterable[type[ApplicationError]]:
    yield root
    for subclass in root.__subclasses__():
        yield from _application_errors(subclass)


def error_codes() -> list[str]:
    """Every stable error code: the platform's, DRF's (as ``core.api`` names them), the domain's."""
    codes = set(GENERIC_CODES) | set(UNDOCUMENTED_CODES) | set(api._DRF_CODES.values()) | set(api.STATUS_CODES.values())
    codes |= {error.code for error in _application_errors()}
    return sorted(codes)


def error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every error of the API, whatever its status.",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {
                        "type": "string",
                        "enum": error_codes(),
                        "description": "Stable: clients branch on it (the message is for people).",
                    },
                    "message": {"type": "string", "description": "For people; may change."},
                    "details": {
                        "type": "object",
                        "additionalProperties": {},
                        "description": "Structured context: `fields` for a validation error, ids, limits.",
                    },
                },
                "required": ["code", "message", "details"],
            }
        },
        "required": ["error"],
    }


class ApiSessionScheme(SessionScheme):  # type: ignore[no-untyped-call]
    """The API's session authentication (its CSRF refusal is ``csrf_failed``) is Django's session cookie."""

    target_class = "core.authentication.SessionAuthentication"


def schema_component(name: str, schema: dict[str, Any], kind: str = ResolvedComponent.SCHEMA) -> Any:
    """A component of the document (``components/<kind>/<name>``), named once, for ``registry.register_on_missing``."""
    return ResolvedComponent(name=name, type=kind, object=name, schema=schema)  # type: ignore[no-untyped-call]


class ApiSchema(AutoSchema):
    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        if "security" not in operation:
            operation["security"] = []  # explicit: no credentials are read at all
        responses: dict[str, Any] = operation["responses"]
        for status, codes in sorted(self._error_codes(operation).items()):
            responses.setdefault(str(status), self._error_response(status, codes))
        return operation

    def get_auth(self) -> list[dict[str, list[str]]]:
        auths: list[dict[str, list[str]]] = super().get_auth()
        if isinstance(self.view, StaffOrInternalTokenApi):
            scheme = {
                "type": "apiKey",
                "in": "header",
                "name": INTERNAL_TOKEN_HEADER,
                "description": (
                    "An internal service's token for the operation's purpose (INTERNAL_<PURPOSE>_TOKEN), "
                    "instead of a staff member's token."
                ),
            }
            self.registry.register_on_missing(
                schema_component(INTERNAL_TOKEN_SCHEME, scheme, ResolvedComponent.SECURITY_SCHEMA)
            )
            auths.insert(len([a for a in auths if a]), {INTERNAL_TOKEN_SCHEME: []})
        elif (
            self.view.get_authenticators()
            and all(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
            and {} not in auths
        ):
            auths.append({})  # anyone may call; a token, when sent, is still checked
        return auths

    # --- errors ---------------------------------------------------------

    def _error_codes(self, operation: dict[str, Any]) -> dict[int, list[str]]:
        view: APIView = self.view
        codes: dict[int, list[str]] = defaultdict(list)
        has_body = "requestBody" in operation
        parameters = operation.get("parameters", [])
        if has_body or any(p["in"] != "path" for p in parameters):
            codes[400].append("validation_error")
        if has_body:
            codes[400].append("malformed_request")
            codes[415].append("unsupported_media_type")
        # Any request under /api/ whose body is over the limit is refused before routing, whatever its method.
        codes[413].append("request_too_large")

        authenticators = view.get_authenticators()
        perms = view.get_permissions()
        safe = self.method in permissions.SAFE_METHODS
        refuses_anonymous = any(not self._lets_anonymous_in(p, safe) for p in perms)
        refuses_authenticated = any(not isinstance(p, (permissions.AllowAny, *_AUTHENTICATED_ONLY)) for p in perms)
        drf_denial = type(view).permission_denied is APIView.permission_denied
        if authenticators:
            codes[401].append("authentication_failed")
            if refuses_anonymous and drf_denial:
                codes[401].append("not_authenticated")
        if refuses_authenticated or (refuses_anonymous and not drf_denial):
            codes[403].append("permission_denied")
        if not safe and any(isinstance(a, SessionAuthentication) for a in authenticators):
            codes[403].append("csrf_failed")

        if any(p["in"] == "path" for p in parameters) or self._is_paginated():
            codes[404].append("not_found")
        codes[406].append("not_acceptable")
        if view.get_throttles():
            codes[429].append("throttled")

        for error in self._domain_errors():
            if error.code not in codes[error.status_code]:
                codes[error.status_code].append(error.code)
        return codes

    def _domain_errors(self) -> tuple[type[ApplicationError], ...]:
        """The view's ``domain_errors``, or this method's in ``domain_errors_by_method`` (methods that differ)."""
        by_method: dict[str, tuple[type[ApplicationError], ...]] = getattr(self.view, "domain_errors_by_method", {})
        return by_method.get(self.method.lower(), getattr(self.view, "domain_errors", ()))

    @staticmethod
    def _lets_anonymous_in(permission: object, safe: bool) -> bool:
        if isinstance(permission, permissions.AllowAny):
            return True
        return safe and isinstance(permission, permissions.IsAuthenticatedOrReadOnly)

    def _is_paginated(self) -> bool:
        return bool(getattr(self.view, "pagination_class", None)) and self._is_list_view()

    def _error_response(self, status: int, codes: list[str]) -> dict[str, Any]:
        component = schema_component(ERROR_COMPONENT, error_schema())
        self.registry.register_on_missing(component)
        meanings = {error.code: error.default_message for error in self._domain_errors()}
        lines = [f"- `{code}`: {meanings.get(code) or GENERIC_CODES.get(code, '')}" for code in codes]
        response: dict[str, Any] = {
            "description": "\n".join(lines),
            "content": {"application/json": {"schema": component.ref}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string", "enum": ["Token"]}, "required": True}
            }
        elif status == 429:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "integer", "minimum": 0}, "description": "Seconds to wait."}
            }
        elif any(error.sends_retry_after and error.status_code == status for error in self._domain_errors()):
            response["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer", "minimum": 0},
                    "required": True,
                    "description": "Seconds to wait.",
                }
            }
        return response
