"""Metrics from every process: web under gunicorn's workers, a prefork Celery worker, and the list in the docs.

The relay's and the stake consumer's own ports are tested with their
processes (tests/outbox/test_relay_processes.py, tests/pools/test_stake_consumer.py).
"""

import importlib
import json
import pkgutil
import re
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from core import prometheus
from lifecycle.tasks import close_lottery
from lotteries.models import Lottery
from lottery_site.celery import app
from notifications.tasks import sweep_notifications
from outbox.tasks import purge_outbox
from tests.concurrency import CeleryWorker, log_lines, manage_py
from tests.kafka import free_port
from tests.metrics import parse, value, wait_for_scrape
from tests.servers import gunicorn_server, request

ROOT = Path(__file__).resolve().parent.parent
PROJECT_APPS = ["core", "outbox", "lotteries", "entries", "draws", "notifications", "lifecycle", "pools", "loadgen"]


# --- web: gunicorn's workers add up ---------------------------------------------------------------


def live_count(body: bytes) -> float:
    samples = parse(body.decode())
    labels = {"method": "GET", "status": "200", "view": "health-live"}
    return value(samples, "django_http_responses_total_by_status_view_method_total", **labels) or 0.0


def serving_pids(log: str) -> set[int]:
    """The workers that served /health/live: the pid of gunicorn's access lines (core.gunicorn_logging)."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and line.endswith("}")]
    return {
        line["pid"] for line in lines if line["event"] == "request_served" and line["request"] == "GET /health/live"
    }


@pytest.mark.slow
@pytest.mark.django_db
def test_under_two_gunicorn_workers_metrics_count_every_request_whichever_worker_served_it(tmp_path):
    log = tmp_path / "gunicorn.log"
    # One thread each; the worker's pid is on every access line: the load must reach both workers.
    with gunicorn_server(log, workers=2, threads=1) as server:
        errors: list[BaseException] = []

        def load(requests: int) -> None:
            try:
                for _ in range(requests):
                    assert server.send(request("GET", "/health/live")).status == 200
            except BaseException as error:  # reported below
                errors.append(error)

        def at_once(clients: int, requests: int) -> None:
            threads = [threading.Thread(target=load, args=(requests,)) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)

        # The second worker loads Django after the first already answers: wait until both serve.
        deadline = time.monotonic() + 90
        while len(serving_pids(log.read_text())) < 2:
            assert time.monotonic() < deadline, f"one worker only served: {log.read_text()[-3000:]}"
            at_once(4, 5)
        before = server.send(request("GET", "/metrics"))
        assert before.status == 200, before.body[:300]
        served_before = len(log.read_text())
        at_once(8, 25)
        after = server.send(request("GET", "/metrics"))

    assert errors == []
    assert live_count(after.body) - live_count(before.body) == 8 * 25
    serving = serving_pids(log.read_text()[served_before:])
    assert len(serving) == 2, f"the load reached workers {serving}"
    # The platform's own metrics are there too: counters of the workers and the scrape-time gauges.
    families = {name for name, _ in parse(after.body.decode())}
    assert {"lottery_ballots_accepted_total", "lottery_outbox_backlog", "lottery_pipeline_degraded"} <= families


# --- worker: the prefork pool's children add up, on the main process's port ------------------------


@pytest.fixture
def empty_queues():
    """Tasks queued by earlier tests (whose rows are gone) are not this test's."""
    with app.connection_for_write() as connection:
        for queue in ("celery", settings.NOTIFICATIONS_QUEUE):
            connection.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
    yield
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(settings.NOTIFICATIONS_QUEUE)  # type: ignore[attr-defined]


def tasks(samples, task: str, outcome: str) -> float:
    return value(samples, "lottery_celery_tasks_total", task=task, outcome=outcome) or 0.0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("kafka_broker", "empty_queues")
def test_a_prefork_worker_shows_its_childrens_runs_failures_retries_and_the_queue_depths(
    tmp_path, make_lottery, make_player, enter
):
    # given a due drop with one entrant, whose row another transaction holds locked
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    locker = psycopg.connect(url)
    locker.execute(f"SELECT 1 FROM {Lottery._meta.db_table} WHERE id = %s FOR UPDATE", [lottery.pk])
    port = free_port()
    # and a prefork worker of two children on the default queue alone, whose lock waits give up at once
    worker = CeleryWorker(
        "--pool", "prefork", "--concurrency", "2", "--queues", "celery",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        WORKER_METRICS_PORT=str(port),
        DATABASE_URL=f"{url}?options=-c%20lock_timeout%3D200",
    )  # fmt: skip
    try:
        for _ in range(5):
            purge_outbox.delay()
        close_lottery.delay(987654321)  # no such lottery: a failure
        close_lottery.delay(lottery.pk)  # the lock times out: a retry
        for _ in range(3):
            sweep_notifications.delay()  # routed to the notifications queue, which this worker does not take

        purge = "outbox.tasks.purge_outbox"
        close = "lifecycle.tasks.close_lottery"
        before_draw = wait_for_scrape(
            port,
            lambda s: (
                tasks(s, purge, "success") == 5 and tasks(s, close, "failure") == 1 and tasks(s, close, "retry") >= 1
            ),
            what="the purges, the failed close and the retried close",
        )
        locker.rollback()  # the lock goes: the retry draws it
        samples = wait_for_scrape(port, lambda s: tasks(s, close, "success") == 1, what="the retried close")
    finally:
        locker.close()
        output = worker.stop()

    assert value(samples, "lottery_celery_task_duration_seconds_count", task=purge) == 5, output[-3000:]
    assert value(samples, "lottery_draws_total", kind="drop") == 1  # a child's domain counter, on the same port
    assert value(before_draw, "lottery_celery_queue_length", queue=settings.NOTIFICATIONS_QUEUE) == 3
    assert value(before_draw, "lottery_celery_queue_length", queue="celery") is not None
    assert Lottery.objects.get(pk=lottery.pk).state == "drawn"


def test_a_prefork_worker_with_a_metrics_port_but_no_multiprocess_directory_refuses_to_start(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    worker = CeleryWorker("--pool", "prefork", "--concurrency", "2", WORKER_METRICS_PORT=str(free_port()))
    try:
        worker.process.wait(60)
    finally:
        worker.stop()

    assert worker.process.returncode == 1
    (refusal,) = [line for line in worker.log() if line["level"] == "critical"]  # every line JSON
    assert refusal["event"].startswith("worker not started: WORKER_METRICS_PORT with the prefork pool needs")
    assert worker.stdout() == ""


@pytest.mark.parametrize(
    ("command", "service", "variable"),
    [("relay_outbox", "relay", "RELAY_METRICS_PORT"), ("consume_stakes", "consumer", "STAKES_CONSUMER_METRICS_PORT")],
)
def test_a_process_whose_metrics_port_is_taken_says_why_in_one_json_line_and_exits_1(command, service, variable):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = manage_py(command, env={variable: str(taken.getsockname()[1]), "METRICS_BIND_ADDRESS": "127.0.0.1"})
        returncode, out, err = process.wait(timeout=60)

    assert returncode == 1
    lines = log_lines(err)  # fails on a line that is not JSON: no traceback
    (refusal,) = [line for line in lines if line["level"] == "critical"]
    assert refusal["service"] == service
    assert refusal["event"].startswith(f"{service} not started: metrics port 127.0.0.1:")
    assert "cannot be opened" in refusal["reason"]
    assert out == ""


# --- every metric is in docs/observability.md --------------------------------------------------------


def project_modules() -> list[str]:
    names = []
    for app_name in PROJECT_APPS:
        package = importlib.import_module(app_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{app_name}."):
            if ".migrations" not in info.name:
                names.append(info.name)
    return names


def metric_names() -> set[str]:
    """Every metric the project's modules define: in the default registry, and every collector class's."""
    for name in project_modules():
        importlib.import_module(name)
    exposed = {"counter": "{}_total", "gauge": "{}", "histogram": "{}", "summary": "{}", "info": "{}_info"}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("lottery_"):
            names.add(exposed[family.type].format(family.name))
    collectors: list[type[Any]] = []
    pending: list[type[Any]] = [Collector]  # the classes that subclass it, at any depth
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.split(".")[0] in PROJECT_APPS:
                collectors.append(subclass)
    assert len(collectors) >= 5
    for cls in collectors:
        if cls.__name__.startswith("_"):
            continue  # a private proxy of a registry (core.prometheus), with no family of its own
        described = list(cls.describe(object.__new__(cls)))  # the families, named without any state
        assert described, f"{cls.__module__}.{cls.__name__} names no family in describe()"
        names |= {exposed[family.type].format(family.name) for family in described}
    return names


def test_every_metric_of_the_platform_is_listed_in_the_observability_docs():
    page = (ROOT / "docs" / "observability.md").read_text()
    section = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", page, re.S | re.M)
    assert section, "docs/observability.md has no Metrics section"
    listed = set(re.findall(r"^\| `(lottery_[a-z0-9_]+)` \|", section.group(1), re.M))  # a table row's first cell
    names = metric_names()

    assert len(names) > 30
    assert sorted(names - listed) == []  # every metric is listed
    assert sorted(listed - names) == []  # and every one listed exists


@pytest.mark.django_db
def test_the_platform_gauges_are_served_by_web_alone(client):
    """Read from PostgreSQL and Redis at each scrape: web's /metrics has them, a process's own registry not."""
    own = {family.name for family in REGISTRY.collect()}
    web = {name for name, _ in parse(client.get("/metrics").content.decode())}

    for name in ("lottery_outbox_backlog", "lottery_heartbeat_age_seconds", "lottery_dead_letters_open"):
        assert name not in own
    assert "lottery_outbox_backlog" in web


@pytest.mark.django_db
def test_made_up_http_methods_add_no_series_to_web_metrics(client):
    """Every method label is an HTTP method or ``<invalid method>``: inventing methods grows no series."""
    client.get("/api/v1/lotteries")
    client.get("/metrics")  # the scrape's own series, from the next scrape on

    for number in range(5):
        assert client.generic(f"MADEUP{number}", "/api/v1/lotteries").status_code == 405
    after = parse(client.get("/metrics").content.decode())
    assert client.generic("MADEUP9", "/api/v1/lotteries").status_code == 405
    again = parse(client.get("/metrics").content.decode())

    methods = {dict(labels)["method"] for _, labels in again if "method" in dict(labels)}
    assert "<invalid method>" in methods
    standard = {"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"}
    assert methods <= standard | {"<invalid method>"}
    assert set(again) == set(after)  # a sixth made-up method: not one series more


def test_many_amounts_observed_at_once_come_out_as_observed_one_by_one():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    amounts = [0.0, 0.01, 0.0100001, 0.3, 0.3, 5, 900, 901, 1e9]  # on the bounds, between, past the last
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("lag_seconds", "lag", buckets=(0.01, 0.5, 5, 900), registry=one)
    at_once = Histogram("lag_seconds", "lag", buckets=(0.01, 0.5, 5, 900), registry=many)
    for amount in amounts:
        by_one.observe(amount)
    prometheus.observe_many(at_once, amounts)
    prometheus.observe_many(at_once, [])

    def without_created(registry: CollectorRegistry) -> str:
        return "\n".join(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)

    assert without_created(many) == without_created(one)
    assert 'lag_seconds_bucket{le="0.01"} 2.0' in without_created(many)
