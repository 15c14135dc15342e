"""Throttles beyond DRF's own."""

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle


class AddressScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` counted per client address, signed in or not.

    For endpoints whose cost does not depend on who asks (a token does not
    make a request cheaper). The address honours ``NUM_PROXIES``.
    """

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
