"""gunicorn with the repository's gunicorn.conf.py: what it refuses itself, and what reaches Django's JSON errors.

One real gunicorn process on a free port, on the test database, for the
module; raw sockets, so each request is exactly the bytes a client sends.
"""

import json
from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.servers import Server, gunicorn_server, request

BODY_LIMIT = 65_536  # the server's DATA_UPLOAD_MAX_MEMORY_SIZE here, so an oversized body is quick to send

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {"DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": str(BODY_LIMIT)}
    with gunicorn_server(log, workers=1, threads=2, env=env) as server:
        yield server


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
