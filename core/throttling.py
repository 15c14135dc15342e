"""The API's throttles: DRF's rates and rules, every throttle of a request checked in one Redis call.

DRF's own throttles keep each history as a pickled list in the cache and
spend two Redis commands per throttle (GET, then SET): four for a ballot,
which has two. These keep DRF's classes, settings (``DEFAULT_THROTTLE_RATES``)
and sliding-window rule (a request is allowed while fewer than ``num_requests``
were allowed in the last ``duration`` seconds, and only an allowed request
counts), but the first throttle of a request runs one Lua script for every
throttle the view has: each history is a sorted set of timestamps, trimmed,
counted and added to atomically in Redis. The others read their verdict from
the request. Retry-After is the time until the oldest counted request leaves
the window.
"""

import itertools
import os
import time
from functools import cache
from typing import Any

from django.core.cache import cache as django_cache
from rest_framework import throttling
from rest_framework.request import Request

# KEYS: one history per throttle. ARGV: now (ms), this request's member, then per key its limit and window (ms).
# Returns per key the wait in ms: 0 when allowed (and counted).
_SCRIPT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local waits = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[1 + 2 * i])
    local window = tonumber(ARGV[2 + 2 * i])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) < limit then
        redis.call('ZADD', key, now, member)
        redis.call('PEXPIRE', key, window)
        waits[i] = 0
    else
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        waits[i] = math.max(1, tonumber(oldest[2]) + window - now)
    end
end
return waits
"""
_KEY_PREFIX = "throttle:"  # not DRF's keys: those hold pickled lists, these sorted sets
_members = itertools.count()
_RESULTS = "_throttle_waits"  # the request attribute the first throttle leaves the verdicts in


@cache
def _script() -> Any:
    client = django_cache._cache.get_client(write=True)  # type: ignore[attr-defined]  # the cache's own Redis
    return client.register_script(_SCRIPT)


class _ScriptedRate:
    """The one-call check, mixed into DRF's throttle classes (before them, so it takes allow_request)."""

    def limit(self, request: Request, view: Any) -> tuple[str, int, int] | None:
        """(history key, requests allowed, window in seconds) for this request, or None when it is not throttled."""
        throttle: Any = self
        if throttle.rate is None:
            return None
        key = throttle.get_cache_key(request, view)
        if key is None:
            return None
        return django_cache.make_key(_KEY_PREFIX + key), throttle.num_requests, throttle.duration

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = self.limit(request, view)
        if limit is None:
            return True
        waits: dict[str, float] | None = getattr(request, _RESULTS, None)
        if waits is None or limit[0] not in waits:
            waits = _check(request, view)
        self.wait_seconds = waits[limit[0]]
        return self.wait_seconds == 0

    def wait(self) -> float | None:
        return self.wait_seconds or None


def _check(request: Request, view: Any) -> dict[str, float]:
    """Run every scripted throttle of the view in one Redis call; leave the verdicts on the request."""
    limits = []
    for throttle in view.get_throttles():
        if isinstance(throttle, _ScriptedRate):
            limit = throttle.limit(request, view)
            if limit is not None:
                limits.append(limit)
    now_ms = int(time.time() * 1000)
    member = f"{now_ms}:{os.getpid()}:{next(_members)}"
    arguments: list[Any] = [now_ms, member]
    for _key, allowed, seconds in limits:
        arguments += [allowed, seconds * 1000]
    answer = _script()(keys=[key for key, _, _ in limits], args=arguments)
    waits = {key: wait / 1000 for (key, _, _), wait in zip(limits, answer, strict=True)}
    setattr(request, _RESULTS, waits)
    return waits


class AnonRateThrottle(_ScriptedRate, throttling.AnonRateThrottle):
    """DRF's: anonymous callers per address (``anon``)."""


class UserRateThrottle(_ScriptedRate, throttling.UserRateThrottle):
    """DRF's: per user when signed in, per address otherwise (``user``)."""


class ScopedRateThrottle(_ScriptedRate, throttling.ScopedRateThrottle):
    """DRF's: per view scope (``throttle_scope``), per user or address."""

    def limit(self, request: Request, view: Any) -> tuple[str, int, int] | None:
        # DRF's ScopedRateThrottle learns its scope in allow_request, from the view.
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return None
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().limit(request, view)


class AddressScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` counted per client address, signed in or not.

    For endpoints whose cost does not depend on who asks (a token does not
    make a request cheaper). The address honours ``NUM_PROXIES``.
    """

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
