"""gunicorn with the repository's gunicorn.conf.py: what it refuses itself, and what reaches Django's JSON errors.

One real gunicorn process on a free port, on the test database, for the
module; raw sockets, so each request is exactly the bytes a client sends.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.kafka import free_port

ROOT = Path(__file__).resolve().parent.parent
BODY_LIMIT = 65_536  # the server's DATA_UPLOAD_MAX_MEMORY_SIZE here, so an oversized body is quick to send

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


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


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    port = free_port()
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": str(BODY_LIMIT),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if server.send(request("GET", "/health/live"), timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Internal Server Error" not in log.read_text(), log.read_text()


def test_a_normal_api_request_is_served(gunicorn):
    answer = gunicorn.send(request("GET", "/api/v1/lotteries"))

    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["results"] == []


def test_a_request_line_over_the_limit_is_refused_by_gunicorn(gunicorn):
    # the path alone is over limit_request_line (4094)
    answer = gunicorn.send(request("GET", "/api/v1/lotteries?kind=" + "x" * 5000))

    assert answer.status in (400, 414)
    assert b"Request Line is too large" in answer.body


def test_too_many_header_fields_are_refused_by_gunicorn(gunicorn):
    headers = [(f"X-Filler-{n}", "1") for n in range(60)]  # over limit_request_fields (50)

    answer = gunicorn.send(request("GET", "/api/v1/lotteries", headers=headers))

    assert answer.status in (400, 431)
    assert b"Error parsing headers" in answer.body


def test_a_header_field_over_the_limit_is_refused_by_gunicorn(gunicorn):
    answer = gunicorn.send(request("GET", "/api/v1/lotteries", headers=[("X-Filler", "x" * 9000)]))

    assert answer.status in (400, 431)


def test_a_body_over_the_limit_is_the_json_413(gunicorn):
    # given a request whose Content-Length is over the limit; only its start is sent
    head = request("POST", "/api/v1/auth/token", headers=[("Content-Type", "application/json")])
    raw = head.replace(b"\r\n\r\n", f"\r\nContent-Length: {BODY_LIMIT + 1}\r\n\r\n".encode()) + b'{"username": "'

    answer = gunicorn.send(raw)

    assert answer.status == 413
    assert answer.error()["code"] == "request_too_large"
    assert answer.error()["details"] == {"max_bytes": BODY_LIMIT}


def chunked(body: bytes, *, size: int = 8192) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_is_the_json_413(gunicorn):
    # given a body sent in chunks, without a Content-Length, one byte over the limit
    body = b'{"pad": "' + b"x" * (BODY_LIMIT - 10) + b'"}'
    head = request(
        "POST",
        "/api/v1/auth/token",
        headers=[("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
    )

    answer = gunicorn.send(head + chunked(body))

    assert len(body) == BODY_LIMIT + 1
    assert answer.status == 413
    assert answer.error()["code"] == "request_too_large"


def test_a_chunked_body_within_the_limit_is_read(gunicorn):
    # given a close request whose body comes in chunks, without a Content-Length
    # (of a lottery that does not exist: nothing the server commits outlives the test)
    body = json.dumps({"force": "perhaps"}).encode()
    head = request(
        "POST",
        "/api/v1/lotteries/987654321/close",
        headers=[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
            ("X-Internal-Token", settings.INTERNAL_TOKENS["close"][0]),
        ],
    )

    answer = gunicorn.send(head + chunked(body, size=5))

    # then the body was read and validated, not taken as missing (which would close without force)
    assert answer.status == 400, answer.body
    assert answer.error()["code"] == "validation_error"
    assert list(answer.error()["details"]["fields"]) == ["force"]


def test_a_disallowed_host_is_the_json_400(gunicorn):
    raw = request("GET", "/api/v1/lotteries").replace(b"Host: 127.0.0.1", b"Host: evil.example")

    answer = gunicorn.send(raw)

    assert answer.status == 400
    assert answer.error()["code"] == "invalid_host"
