"""A real web server for tests that drive the platform over HTTP: gunicorn on a free port, on the test database.

The repository's gunicorn.conf.py with the tests' settings, database, Redis
and broker. A test talks to it in JSON (``Server.call``, ``call_json``) or in
raw bytes (``Server.send`` with ``request``), so that each request is exactly
the bytes a client sends.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, object]:
        assert self.headers["content-type"].startswith("application/json"), self.body[:300]
        document: dict[str, dict[str, object]] = json.loads(self.body)
        assert list(document) == ["error"]
        assert set(document["error"]) == {"code", "message", "details"}
        return document["error"]


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        """``call_json`` on this server's ``path``."""
        return call_json(method, self.base_url + path, body, **headers)

    def send(self, raw: bytes, *, timeout: float = 10) -> Answer:
        """Send these bytes on a new connection; read the answer until the server closes it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(raw)
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass  # the server closed with part of the request unread; its answer came first
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = dechunk(body)
        return Answer(int(status_line.split()[1]), headers, body)


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def request(method: str, path: str, *, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def call_json(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    """The status and JSON document of a request (``body`` sent as JSON); ``X_Name=`` sends header ``X-Name``."""
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (our own server on loopback)
    if data is not None:
        call.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        call.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:  # noqa: S310 (our own server)
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def answers(url: str, *, timeout: float = 2) -> bool:
    """Whether a GET of ``url`` answers 200 now (refused, another status or no answer in time: not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own server on loopback)
            return bool(response.status == 200)
    except OSError:  # urllib's URLError and HTTPError among them
        return False


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = 60, name: str = "the server"
) -> None:
    """Poll ``url`` until it answers 200; RuntimeError, with the end of ``log``, if ``process`` exits first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not answers(url):
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer within {timeout:g} s:\n{_tail(log)}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    """SIGTERM, then wait for it to exit; killed if it outlives ``timeout`` seconds (never left behind)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@contextmanager
def gunicorn_server(
    log: Path, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """gunicorn (the repository's gunicorn.conf.py) with ``env`` over the tests' settings, database, Redis and broker.

    ``workers`` and ``threads`` default to gunicorn.conf.py's own defaults; its output (the access log
    included, unless ``GUNICORN_ACCESS_LOG=""``) goes to ``log``. Stopped with SIGTERM when the block ends,
    then its log must hold no "Internal Server Error".
    """
    port = free_port()
    db = settings.DATABASES["default"]
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_THREADS": str(threads),
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, process, log)
    try:
        wait_until_serving(f"{server.base_url}/health/live", process, log, name="gunicorn")
        yield server
    finally:
        stop(process)
    assert "Internal Server Error" not in log.read_text(), log.read_text()
