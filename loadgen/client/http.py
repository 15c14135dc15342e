"""The generator's HTTP client: keep-alive connections to the one base URL it targets (the standard library's
``http.client``, one connection per thread).

Every call answers an ``Answer`` (status, headers, JSON body). A connection
the server closed (an idle keep-alive timed out) or that fails is replaced
and the call retried once (ballots carry an ``Idempotency-Key``, so a retry
never enters twice), then reported as status 0. ``http.client`` costs a
third of the CPU per request that urllib3 does here, which is what lets one
process drive hundreds of entries a second (bench/loadgen.py).
"""

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

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
    """Calls to one platform: ``base_url`` and nothing else. Thread-safe: each thread has its own connection."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) base URL")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def _forget(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

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
                connection = self._connection()
                connection.request(method, url, body=payload, headers=sent)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                last = f"{type(error).__name__}: {error}"
                self._forget()
                continue
            if response.will_close:
                self._forget()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = data.decode(errors="replace")
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
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
