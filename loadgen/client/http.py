"""The generator's HTTP client: one keep-alive connection pool to the one base URL it targets (urllib3).

Thread-safe: entries go out from many threads through the same pool. Every
call answers an ``Answer`` (status, headers, JSON body); a connection that
fails is retried once (ballots carry an ``Idempotency-Key``, so a retry never
enters twice), then reported as status 0.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3

TRANSPORT_ERROR = 0  # the status of an answer that never came


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: str = ""

    @property
    def code(self) -> str:
        """The error code of an error answer (the API's one shape), ``transport_error`` without an answer."""
        if self.status == TRANSPORT_ERROR:
            return "transport_error"
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code", f"http_{self.status}"))
        return f"http_{self.status}"

    def retry_after(self, default: float = 1.0) -> float:
        try:
            return max(0.0, float(self.headers.get("retry-after", default)))
        except ValueError:
            return default


class Api:
    """Calls to one platform: ``base_url`` and nothing else."""

    def __init__(self, base_url: str, *, connections: int, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) base URL")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=connections,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Answer:
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        sent = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        last = ""
        for _attempt in range(2):
            try:
                response = self._pool.urlopen(method, url, body=payload, headers=sent, preload_content=True)
            except urllib3.exceptions.HTTPError as error:
                last = str(error)
                continue
            data = response.data
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = data.decode(errors="replace")
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, parsed)
        return Answer(TRANSPORT_ERROR, error=last)

    def control(self, method: str, path: str, *, attempts: int = 5, **kwargs: Any) -> Answer:
        """A call of the generator's own (a drop, a record): waits out 429 and transport errors a few times."""
        answer = Answer(TRANSPORT_ERROR)
        for _ in range(attempts):
            answer = self.call(method, path, **kwargs)
            if answer.status == 429:
                time.sleep(min(answer.retry_after(), 10.0))
            elif answer.status == TRANSPORT_ERROR or answer.status >= 502:
                time.sleep(0.5)
            else:
                return answer
        return answer

    def wait_until_live(self, timeout: float) -> bool:
        """Poll ``/health/live`` until it answers 200, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.call("GET", "/health/live").status == 200:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
