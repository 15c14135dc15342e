"""Log lines (core.logs): one JSON object each, with the ids that tie a request, its tasks and a trace together.

In this process first (the formatter on a handler of the test's own, the
ids of a real OpenTelemetry SDK span, the request id through Django's
middleware), then in real processes: gunicorn with the repository's
gunicorn.conf.py, and a Celery worker running a task that a request queued.
"""

import io
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from celery.app.trace import LOG_SUCCESS
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from opentelemetry.sdk.trace import TracerProvider

from core.logs import FIRST_KEYS, FailedRequestOnce, RepeatedBrokerLines, formatter
from core.process import service_name
from lifecycle.tasks import lottery_timer
from lottery_site.celery import app as celery_app
from outbox.tasks import relay_outbox
from tests.concurrency import ROOT, Worker, log_lines, process_env
from tests.servers import request
from tests.test_gunicorn import gunicorn  # noqa: F401 (the server fixture, for this module too)

DROPS_TOKEN = settings.INTERNAL_TOKENS["drops"][0]

Lines = Callable[[], list[dict[str, Any]]]


def capture(fmt: str) -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt))
    logging.getLogger().addHandler(handler)
    return handler, stream


@pytest.fixture
def lines() -> Iterator[Lines]:
    """What this process logs from now on, as the platform's handler writes it (JSON), one dict per line."""
    handler, stream = capture("json")
    try:
        yield lambda: log_lines(stream.getvalue())
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_standard_library_line_is_one_json_object_with_its_fields_and_the_ids_of_its_span(lines):
    tracer = TracerProvider().get_tracer("tests")

    with tracer.start_as_current_span("close") as span:
        logging.getLogger("lifecycle.services").info("lottery opened", extra={"lottery_id": 7, "kind": "drop"})
    logging.getLogger("lifecycle.services").info("lottery opened", extra={"lottery_id": 8})

    inside, outside = lines()
    assert tuple(inside)[: len(FIRST_KEYS)] == FIRST_KEYS
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert (inside["event"], inside["lottery_id"], inside["kind"]) == ("lottery opened", 7, "drop")
    assert (inside["level"], inside["logger"], inside["service"]) == ("info", "lifecycle.services", service_name())
    assert datetime.fromisoformat(inside["timestamp"]).utcoffset() == timedelta(0)
    # outside any span (and any request) the ids are there, and null
    assert (outside["trace_id"], outside["span_id"], outside["request_id"]) == (None, None, None)
    assert outside["lottery_id"] == 8


def test_bound_context_is_in_every_line_and_a_lines_own_fields_win(lines):
    with structlog.contextvars.bound_contextvars(request_id="req-1", lottery_id=1):
        logging.getLogger("entries.services").info("ballot refused", extra={"lottery_id": 2})
        structlog.get_logger("pools.consumer").info("stake applied", stake_id="s-1")

    stdlib, structlogs = lines()
    assert (stdlib["request_id"], stdlib["lottery_id"]) == ("req-1", 2)
    assert (structlogs["request_id"], structlogs["lottery_id"], structlogs["stake_id"]) == ("req-1", 1, "s-1")
    assert structlogs["logger"] == "pools.consumer"


def test_an_exception_is_written_inside_its_one_line(lines):
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("core").exception("boom", extra={"draw_id": 3})

    (line,) = lines()
    assert line["level"] == "error"
    assert "ZeroDivisionError: division by zero" in line["exception"]
    assert line["draw_id"] == 3


def test_the_console_format_is_a_readable_line():
    handler, stream = capture("console")
    try:
        logging.getLogger("lifecycle.services").info("lottery opened", extra={"lottery_id": 7})
    finally:
        logging.getLogger().removeHandler(handler)

    line = stream.getvalue().strip()
    assert "lottery opened" in line
    assert "lottery_id=7" in line
    assert "[lifecycle.services]" in line
    assert "{" not in line
    assert "trace_id" not in line  # null ids are left out


BIN = Path(sys.executable).parent
ENTRY_POINTS = {
    "manage.py": [sys.executable, str(ROOT / "manage.py"), "check"],
    "celery worker": [str(BIN / "celery"), "-A", "lottery_site", "worker", "--pool", "solo"],
    "celery beat": [str(BIN / "celery"), "-A", "lottery_site", "beat"],
    "gunicorn": [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "lottery_site.wsgi"],
}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_FORMAT", "yaml", "LOG_FORMAT='yaml' is not one of json, console"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off"),
        ("DATABASE_URL", "bogus://somewhere/db", "DATABASE_URL cannot be read: UnknownSchemeError"),
        ("DJANGO_SETTINGS_MODULE", "no_such.settings", "ModuleNotFoundError: No module named 'no_such'"),
    ],
)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_wrong_setting_stops_every_process_at_start_with_one_json_line_saying_which(entry, name, value, message):
    env = {**process_env(), name: value or ""}
    if value is None:  # the real settings, which read the key from the environment alone
        env.update(DJANGO_SETTINGS_MODULE="lottery_site.settings", DJANGO_DEBUG="false")
        del env[name]
    command = ENTRY_POINTS[entry]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60)

    assert done.returncode == 3, done.stderr  # gunicorn's master stops on it, instead of forking again
    logged = log_lines(done.stdout + done.stderr)  # fails on any line that is not JSON: no traceback
    stops = [line for line in logged if line["logger"] == "lottery_site.settings"]
    assert stops, logged
    for line in stops:
        assert line["level"] == "critical"
        assert message in line["reason"]
        assert line["event"] == f"not started: {line['reason']}"


CHECK_APART = (
    "import sys; from core.process import settings_or_exit_apart; settings_or_exit_apart(); "
    "print(sorted(name for name in sys.modules if name.startswith(('lottery_site', 'django.conf'))))"
)


def test_gunicorns_master_checks_the_settings_in_a_child_and_keeps_none_of_their_modules():
    """What the master imports, the workers of a reload (SIGHUP) inherit: the settings must not be among it."""
    env = {**process_env(), "DJANGO_SETTINGS_MODULE": "lottery_site.settings", "DJANGO_DEBUG": "false"}
    good = subprocess.run([sys.executable, "-c", CHECK_APART], cwd=ROOT, env=env, capture_output=True, text=True)
    del env["DJANGO_SECRET_KEY"]
    wrong = subprocess.run([sys.executable, "-c", CHECK_APART], cwd=ROOT, env=env, capture_output=True, text=True)

    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "[]"  # neither the settings, nor the package that holds them
    assert wrong.returncode == 3
    (line,) = log_lines(wrong.stderr)  # the child's line, once
    assert "DJANGO_SECRET_KEY must be set" in line["reason"]
    assert wrong.stdout == ""


def test_manage_py_reads_the_settings_its_command_line_names_and_shows_its_help_whatever_they_say():
    env = {**process_env(), "DJANGO_SETTINGS_MODULE": "lottery_site.settings", "DJANGO_DEBUG": "false"}
    del env["DJANGO_SECRET_KEY"]  # wrong for lottery_site.settings, which reads it from the environment alone

    wrong = subprocess.run(ENTRY_POINTS["manage.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    named = subprocess.run(
        [*ENTRY_POINTS["manage.py"], "--settings", "tests.settings"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    helped = subprocess.run([sys.executable, str(ROOT / "manage.py"), "help"], cwd=ROOT, env=env, capture_output=True)

    assert wrong.returncode == 3
    assert named.returncode == 0, named.stderr  # tests.settings gives the tests' key
    assert helped.returncode == 0
    assert b"Available subcommands" in helped.stdout


def test_a_wrong_setting_is_a_readable_line_when_the_log_format_says_console():
    env = {**process_env(), "LOG_FORMAT": "console", "LOG_LEVEL": "LOUD"}
    done = subprocess.run(ENTRY_POINTS["manage.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)

    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert "[critical" in line
    assert "not started: LOG_LEVEL='LOUD' is not one of DEBUG" in line


def test_kafka_pythons_warnings_show_once_a_minute_each_and_then_say_how_many_were_held_back():
    handler, stream = capture("json")
    repeated = RepeatedBrokerLines()
    repeated.WINDOW_SECONDS = 0.5
    handler.addFilter(repeated)
    kafka, ours = logging.getLogger("kafka.net.manager"), logging.getLogger("outbox.relay")
    try:
        for attempt in range(5):  # a broker down: kafka-python's reconnects, and our own warnings
            kafka.error("Connection failed: %s", f"KafkaConnectionError: 111 ECONNREFUSED (attempt {attempt})")
            kafka.warning("Bootstrap connection to %s failed", "bootstrap-0")
            ours.warning("Kafka unavailable")
        time.sleep(0.6)
        kafka.error("Connection failed: %s", "KafkaConnectionError: 111 ECONNREFUSED (attempt 5)")
    finally:
        logging.getLogger().removeHandler(handler)

    logged = [
        (line["logger"], line["level"], line["event"], line.get("repeated")) for line in log_lines(stream.getvalue())
    ]
    assert logged == [
        ("kafka.net.manager", "error", "Connection failed: KafkaConnectionError: 111 ECONNREFUSED (attempt 0)", None),
        ("kafka.net.manager", "warning", "Bootstrap connection to bootstrap-0 failed", None),
        *[("outbox.relay", "warning", "Kafka unavailable", None)] * 5,  # the platform's own lines are never held
        ("kafka.net.manager", "error", "Connection failed: KafkaConnectionError: 111 ECONNREFUSED (attempt 5)", 4),
    ]


def test_celerys_line_for_every_task_run_and_beats_for_every_send_are_debug(lines):
    success = {"id": "t-1", "name": "outbox.tasks.relay_outbox", "return_value": 0, "runtime": 0.01}
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "relay-sweep", "outbox.tasks.x")
    logging.getLogger("celery.app.trace").info(LOG_SUCCESS, success)
    logging.getLogger("celery.app.trace").error("Task %s[%s] raised unexpected: %s", "x", "t-2", "boom")
    assert [line["level"] for line in lines()] == ["error"]  # a failure keeps its level

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("celery.app.trace").info(LOG_SUCCESS, success)
    finally:
        root.setLevel(level)
    assert lines()[-1]["level"] == "debug"
    assert lines()[-1]["event"].startswith("Task outbox.tasks.relay_outbox[t-1] succeeded")


# --- The request id, in this process ------------------------------------------------------


def drop_terms(*, opens_in: timedelta = timedelta(seconds=2)) -> dict[str, Any]:
    now = timezone.now()
    return {
        "title": "Logged drop",
        "prize": "A jacket",
        "prize_quantity": 1,
        "opens_at": (now + opens_in).isoformat(),
        "closes_at": (now + opens_in + timedelta(hours=1)).isoformat(),
    }


@pytest.mark.django_db
def test_the_request_id_a_client_sends_is_echoed_and_in_every_line_of_its_request(api, lines):
    response = api.post(
        reverse("drop-create"),
        drop_terms(opens_in=timedelta(hours=1)),
        format="json",
        HTTP_X_INTERNAL_TOKEN=DROPS_TOKEN,
        HTTP_X_REQUEST_ID="client-req.42",
    )

    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "client-req.42"
    logged = lines()
    assert logged and all(line["request_id"] == "client-req.42" for line in logged)
    created = next(line for line in logged if line["event"] == "drop created")
    assert created["lottery_id"] == response.json()["id"]
    finished = next(line for line in logged if line["event"] == "request_finished")
    assert (finished["code"], finished["request"], finished["ip"]) == (201, "POST /api/v1/drops", "127.0.0.1")

    logging.getLogger("core").info("after the request")
    assert lines()[-1]["request_id"] is None  # the request is over: its id is not the next line's


@pytest.mark.django_db
def test_the_lines_of_a_request_served_inside_a_span_carry_its_trace_id(api, lines):
    tracer = TracerProvider().get_tracer("tests")

    with tracer.start_as_current_span("GET /api/v1/lotteries") as span:
        response = api.get(reverse("lottery-list"), HTTP_X_REQUEST_ID="traced-1")
    with tracer.start_as_current_span("GET /api/v1/nowhere") as missed:
        assert api.get("/api/v1/nowhere").status_code == 404

    assert response.status_code == 200
    trace_id, other = (f"{s.get_span_context().trace_id:032x}" for s in (span, missed))
    assert [(line["event"], line["trace_id"]) for line in lines()] == [
        ("request_finished", trace_id),
        ("request_finished", other),
        ("Not Found: /api/v1/nowhere", other),  # Django's own line, written once every middleware has returned
    ]
    assert response.wsgi_request.META["lottery.trace_id"] == trace_id  # for gunicorn's access line


@pytest.mark.django_db
@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "<script>", "a\u00e9b", "semi;colon"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_uuid(api, lines, sent):
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}

    response = api.get(reverse("lottery-list"), **headers)

    assert response.status_code == 200
    made = response["X-Request-ID"]
    assert made != sent
    assert uuid.UUID(made).version == 4
    assert [line["request_id"] for line in lines()] == [made]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "extra", "status", "code"),
    [
        ("/api/v1/no-such-thing", {}, 404, "not_found"),
        ("/api/v1/lotteries", {"HTTP_HOST": "evil.example"}, 400, "invalid_host"),
        ("/api/v1/lotteries?page=abc", {}, 400, None),
    ],
)
def test_an_error_answer_carries_the_request_id_and_so_do_its_lines(api, lines, path, extra, status, code):
    response = api.get(path, HTTP_X_REQUEST_ID="err-1", **extra)

    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert code is None or response.json()["error"]["code"] == code
    assert response["X-Request-ID"] == "err-1"
    logged = lines()
    assert {line["logger"] for line in logged} >= {"django_structlog.middlewares.request"}
    assert all(line["request_id"] == "err-1" for line in logged), logged


@contextmanager
def platform_log() -> Iterator[Lines]:
    """What the platform's own handler writes meanwhile (its filters included), one dict per line."""
    (handler,) = [h for h in logging.getLogger().handlers if any(isinstance(f, FailedRequestOnce) for f in h.filters)]
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield lambda: log_lines(stream.getvalue())
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


@pytest.mark.urls("tests.raising_urls")
def test_a_request_that_raised_logs_its_traceback_once_in_the_line_with_its_ids(client):
    client.raise_request_exception = False
    with platform_log() as logged:
        response = client.get("/api/v1/test/raising", HTTP_X_REQUEST_ID="raised-1")
        unavailable = client.get("/api/v1/test/unavailable", HTTP_X_REQUEST_ID="down-1")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response["X-Request-ID"] == "raised-1"
    raised = [line for line in logged() if line["request_id"] == "raised-1"]
    (failed,) = [line for line in raised if "exception" in line]
    assert failed["event"] == "request_failed"
    assert failed["level"] == "error"
    assert "RuntimeError: the view broke" in failed["exception"]
    assert not [line for line in raised if line["logger"] == "django.request"], raised
    # A 5xx answer that raised nothing keeps Django's line: it is the only one that says so at ERROR.
    assert unavailable.status_code == 503
    (down,) = [line for line in logged() if line["request_id"] == "down-1" and line["logger"] == "django.request"]
    assert down["event"] == "Service Unavailable: /api/v1/test/unavailable"
    assert "exception" not in down


# --- Real processes -------------------------------------------------------------------------


def server_log(server) -> list[dict[str, Any]]:
    return log_lines(server.log.read_text())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_line_of_gunicorn_is_json_and_its_access_line_carries_the_request_id(gunicorn):  # noqa: F811
    sent = gunicorn.send(request("GET", "/api/v1/lotteries", headers=[("X-Request-ID", "gunicorn-1")]))
    made = gunicorn.send(request("GET", "/api/v1/x"))

    assert sent.status == 200
    assert sent.headers["x-request-id"] == "gunicorn-1"
    assert made.status == 404
    assert uuid.UUID(made.headers["x-request-id"]).version == 4
    logged = server_log(gunicorn)  # stdout and stderr: fails on any line that is not JSON
    assert {"gunicorn.error", "gunicorn.access", "django_structlog.middlewares.request"} <= {
        line["logger"] for line in logged
    }
    assert all(line["service"] == "web" for line in logged)  # the master's lines too
    for rid, code, path in [("gunicorn-1", 200, "/api/v1/lotteries"), (made.headers["x-request-id"], 404, "/api/v1/x")]:
        (access,) = [line for line in logged if line["event"] == "request_served" and line["request_id"] == rid]
        assert (access["code"], access["request"]) == (code, f"GET {path}")
        assert access["duration_ms"] >= 0
        assert any(line["event"] == "request_finished" and line["request_id"] == rid for line in logged)


@pytest.fixture
def worker() -> Iterator[Worker]:
    """A worker on the default queue, which starts empty: tasks queued by earlier tests are not this test's."""
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")  # type: ignore[attr-defined]
    process = Worker(queues="celery")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_task_that_a_request_queued_logs_with_that_requests_id(gunicorn, worker, kafka_broker):  # noqa: F811
    # given a drop created over HTTP that opens in two seconds: the request queues its timer, with that moment
    body = json.dumps(drop_terms(opens_in=timedelta(seconds=2))).encode()
    headers = [("Content-Type", "application/json"), ("X-Internal-Token", DROPS_TOKEN), ("X-Request-ID", "drop-req-1")]

    answer = gunicorn.send(request("POST", "/api/v1/drops", headers=headers, body=body))

    assert answer.status == 201, answer.body
    drop_id = json.loads(answer.body)["id"]
    # the worker opens it on time, and its lines carry the request's id and the task's own
    opened = worker.wait_for_log("lottery opened on schedule", timeout=30, lottery_id=drop_id)
    assert opened["request_id"] == "drop-req-1"
    assert opened["service"] == "worker"
    assert opened["task_id"]
    transition = worker.wait_for_log("lottery transition", lottery_id=drop_id, to="open")
    assert (transition["request_id"], transition["task_id"]) == ("drop-req-1", opened["task_id"])
    created = next(line for line in server_log(gunicorn) if line["event"] == "drop created")
    assert (created["request_id"], created["lottery_id"]) == ("drop-req-1", drop_id)


@pytest.mark.slow
def test_a_worker_stopped_by_sigterm_says_so_in_its_log_and_nowhere_else(worker):
    worker.stop()  # a warm shutdown: Celery's handler of SIGTERM

    assert worker.process.returncode == 0
    assert worker.stdout() == ""
    (notice,) = [line for line in worker.log() if line["event"] == "worker: Warm shutdown (MainProcess)"]
    assert (notice["service"], notice["level"], notice["logger"]) == ("worker", "info", "celery.apps.worker")
    # Celery reads Django's settings as the configuration it expects: no warning of settings to upgrade.
    warned = [line["event"] for line in worker.log() if line["level"] == "warning"]
    assert not [event for event in warned if "deprecated" in event or "celery upgrade settings" in event], warned


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_relay_sweeps_that_find_nothing_write_nothing_at_info(worker):
    started = len(worker.log())

    # given the sweeps beat sends every OUTBOX_SWEEP_SECONDS, with nothing in the outbox, then a task that logs
    for _ in range(3):
        relay_outbox.apply_async(expires=settings.OUTBOX_SWEEP_SECONDS)
    lottery_timer.delay(0, "open")  # a timer of a lottery that does not exist: it says so, at WARNING
    worker.wait_for_log("lottery timer for a missing lottery", lottery_id=0)

    assert [line["event"] for line in worker.log()[started:]] == ["lottery timer for a missing lottery"]
