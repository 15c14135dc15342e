"""deploy/: the Prometheus config, its alerts, Alertmanager and the Grafana dashboards, against a real Prometheus.

The slow test runs the platform's processes (gunicorn, a prefork Celery
worker, the relay, the stake consumer) on free ports, puts a short flow
through them (ballots and a refusal, a drop's draw and its winner's SMS, a
pool filled by stakes, a dead letter, a failed task), then starts Debian's
``prometheus`` on the repository's config (targets rewritten to the test's
ports, every second) and asks it every dashboard panel's query and every
alert's selectors. The Business dashboard's SQL runs on the test database.
Grafana itself is not here: its provisioning files are checked for structure.
``promtool`` and ``amtool`` check the files and run the alerts' unit tests.
A missing binary fails the test (``.ci/run`` installs them).
"""

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kafka import KafkaProducer
from rest_framework.authtoken.models import Token

from analytics.services import metrics_refresh
from draws.models import LotteryAward
from lifecycle.tasks import close_lottery
from notifications.models import Notification
from outbox.kafka import ensure_topics
from outbox.models import DeadLetter
from tests.concurrency import CeleryWorker, manage_py, wait_for
from tests.kafka import free_port
from tests.servers import gunicorn_server, stop, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
JOBS = {"web", "worker", "notifier", "relay", "consumer"}
STAKES_TOKEN = "test-stakes-token-0000"  # tests.settings


def binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: apt-get install prometheus prometheus-alertmanager (.ci/run does)"
    return found


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# --- The files, checked by the tools that read them ---------------------------------------------------------


def test_promtool_finds_the_config_and_its_rules_valid_and_every_alert_fires_in_its_unit_tests():
    promtool = binary("promtool")
    assert "SUCCESS" in run(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert f"SUCCESS: {len(alert_rules())} rules found" in run(promtool, "check", "rules", str(ALERTS))
    assert "SUCCESS" in run(promtool, "test", "rules", str(ALERT_TESTS))


def test_each_alert_has_unit_tests_that_see_it_fire_and_see_it_quiet():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [check for check in checks if check["alertname"] == rule["alert"]]
        assert any(check["exp_alerts"] for check in mine), f"no unit test sees {rule['alert']} fire"
        assert any(not check["exp_alerts"] for check in mine), f"no unit test sees {rule['alert']} quiet"
    names = {rule["alert"] for rule in alert_rules()}
    assert {"OutboxEventUnpublished", "DeadLettersGrowing", "ConsumerLagging", "SmsFailureRate"} <= names
    assert {"DrawOverdue", "HeartbeatMissing"} <= names


def test_the_prometheus_config_scrapes_every_process_of_compose_on_its_metrics_port():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}

    assert set(targets) == JOBS
    for job, [target] in targets.items():
        host, port = target.split(":")
        assert host == job and host in compose, target
        service = compose[host]
        assert port in service.get("expose", []) or f"{port}:{port}" in service.get("ports", []), target


def test_amtool_finds_the_alertmanager_config_valid_with_its_webhook_receiver():
    output = run(binary("amtool"), "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in output and "1 receivers" in output
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [receiver] = config["receivers"]
    assert receiver["webhook_configs"][0]["url"] == "http://alert-webhook.invalid/alerts"  # compose replaces it
    assert "ALERT_WEBHOOK_URL" in json.dumps(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_runs_prometheus_alertmanager_and_grafana_on_the_files_of_the_repository():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("grafana", 3000)):
        service = compose[name]
        assert f"{port}:{port}" in service["ports"], name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


# --- Grafana's provisioning, by structure --------------------------------------------------------------------


def datasources() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            found[source["uid"]] = source["type"]
    return found


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield from panel.get("panels", [])
        if panel["type"] != "row":
            yield panel


def test_grafana_provisioning_names_fixed_datasource_uids_and_every_panel_one_of_them():
    sources = datasources()
    assert sources == {"prometheus": "prometheus", "business-postgres": "grafana-postgresql-datasource"}
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "lottery.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]

    assert {path.name for path in DASHBOARDS} == {"platform.json", "business.json"}
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert list(panels(board)), path.name
        for panel in panels(board):
            where = f"{path.name}: {panel['title']}"
            assert panel["datasource"]["uid"] in sources, where
            assert panel["datasource"]["type"] == sources[panel["datasource"]["uid"]], where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target.get("expr") or target.get("rawSql"), where
        for variable in board["templating"]["list"]:
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in sources, variable["name"]
    assert len(uids) == len(DASHBOARDS)


# --- Against a real Prometheus ------------------------------------------------------------------------------

RATE_INTERVAL = "1m"  # Grafana's $__rate_interval at least 4 scrapes; the whole test fits in it at 1 s
INTERVAL = "15s"


def promql(expr: str, variables: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", INTERVAL)
    expr = expr.replace("$__range", "5m")
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression: every metric name with its label matchers."""
    expr = re.sub(r'"[^"]*"', lambda m: m.group(0).replace("(", "").replace(")", ""), expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]|\boffset\s+\w+", " ", expr)
    found = []
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", expr):
        name, labels, call = match.groups()
        if call or name in {"and", "or", "unless", "bool"} or re.fullmatch(r"\d.*", name):
            continue
        found.append(name + (labels or ""))
    return found


def test_the_selector_reader_finds_each_metric_of_an_expression():
    expr = ALERTS.read_text()
    assert selectors('sum(x{a="b"}) > (sum(y offset 10m) or vector(0))') == ['x{a="b"}', "y"]
    assert selectors("max by (kind) (z) > 300") == ["z"]
    assert selectors('sum(rate(s{outcome="failed"}[10m])) / sum(rate(s[10m])) > 0.05') == ['s{outcome="failed"}', "s"]
    assert "lottery_outbox_oldest_unpublished_age_seconds" in expr


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:  # noqa: S310 (loopback)
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        try:
            return list(self.get("/api/v1/query", query=expr)["result"])
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{expr}: {error.read().decode()}") from None


@contextmanager
def running_prometheus(directory: Path, ports: dict[str, int]) -> Iterator[Prometheus]:
    """Debian's prometheus on the repository's config, its targets rewritten to ``ports``, scraping every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    config.pop("alerting")  # no Alertmanager here: promtool test rules proves the firing
    config["rule_files"] = [str(ALERTS)]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    directory.mkdir()
    rewritten = directory / "prometheus.yml"
    rewritten.write_text(yaml.safe_dump(config))
    run(binary("promtool"), "check", "config", str(rewritten))
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary("prometheus"), f"--config.file={rewritten}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    prometheus = Prometheus(port)
    try:
        wait_until_serving(f"{prometheus.url}/-/ready", process, directory / "prometheus.log", name="prometheus")
        yield prometheus
    finally:
        stop(process)
        log.close()


def sql(raw: str, variables: dict[str, str], start: str, end: str) -> str:
    raw = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", raw)
    raw = raw.replace("$__timeFrom()", f"'{start}'::timestamptz").replace("$__timeTo()", f"'{end}'::timestamptz")
    for name, value in variables.items():
        raw = raw.replace(f"${name}", value)
    assert "$" not in raw, f"a Grafana macro or variable this test does not know: {raw}"
    return raw


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("kafka_broker")
def test_every_panel_and_every_alerts_selectors_have_data_in_a_real_prometheus_scraping_the_platform(
    tmp_path, make_lottery, make_player
):
    suffix = uuid.uuid4().hex[:8]
    stakes_topic = f"player.v1.staked.prometheus-{suffix}"
    ensure_topics([stakes_topic, f"{stakes_topic}.dlq"])
    ports = {"worker": free_port(), "relay": free_port(), "consumer": free_port()}
    env = {
        "STAKES_TOPIC": stakes_topic,
        "STAKES_DLQ_TOPIC": f"{stakes_topic}.dlq",
        "STAKES_CONSUMER_GROUP": f"prometheus-{suffix}",
        # Every SMS fails at its first attempt: the SMS alert's selectors have a failure to find.
        "SMS_FAILURE_RATE": "1",
        "SMS_MAX_ATTEMPTS": "1",
        "SMS_LATENCY_MIN_MS": "0",
        "SMS_LATENCY_MAX_MS": "0",
    }
    with ExitStack() as stack:
        web = stack.enter_context(gunicorn_server(tmp_path / "web.log", workers=1, env=env))
        ports["web"] = web.port
        # One worker takes both queues here: the notifier job scrapes it too (compose runs two).
        ports["notifier"] = ports["worker"]
        worker = CeleryWorker(
            "--pool", "prefork", "--concurrency", "1",
            "--queues", f"celery,{settings.NOTIFICATIONS_QUEUE}",
            WORKER_METRICS_PORT=str(ports["worker"]),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"),
            **env,
        )  # fmt: skip
        stack.callback(worker.stop)
        relay = manage_py("relay_outbox", env={"RELAY_METRICS_PORT": str(ports["relay"]), **env})
        stack.callback(relay.stop)
        consumer = manage_py("consume_stakes", env={"STAKES_CONSUMER_METRICS_PORT": str(ports["consumer"]), **env})
        stack.callback(consumer.stop)
        worker.wait_ready(90)
        relay.wait_for_log("relay started", 60)
        consumer.wait_for_log("consumer started", 90)

        # The flow. A drop with one ballot, a refused second one, drawn by the worker; its winner's SMS fails.
        now = timezone.now()
        drop = make_lottery(closes_at=now + timedelta(seconds=4), opens_at=now - timedelta(hours=1))
        token = Token.objects.create(user=make_player())
        auth = f"Token {token.key}"
        assert web.call("POST", f"/api/v1/lotteries/{drop.pk}/ballots", Authorization=auth)[0] == 201
        status, refused = web.call("POST", f"/api/v1/lotteries/{drop.pk}/ballots", Authorization=auth)
        assert status >= 400, refused
        time.sleep(max(0.0, (drop.closes_at - timezone.now()).total_seconds()) + 0.5)
        close_lottery.delay(drop.pk)
        close_lottery.delay(987654321)  # no such lottery: a failed task
        # A pool filled by three stakes, drawn by the worker; a message that is not JSON is dead-lettered.
        game = f"prom-{suffix}"
        for n in (1, 2, 3):
            body = {"stakeId": f"{game}-{n}", "playerId": f"{game}-p{n}", "gameId": game, "amount": "5.00",
                    "currency": "EUR"}  # fmt: skip
            status, answer = web.call("POST", "/api/v1/stakes", body, X_Internal_Token=STAKES_TOKEN)
            assert status == 202, answer
        producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
        producer.send(stakes_topic, key=game.encode(), value=b"not a stake").get(timeout=30)
        producer.close()
        wait_for(lambda: LotteryAward.objects.filter(lottery__game_id=game).exists(), 90, "the pool's draw")
        wait_for(lambda: DeadLetter.objects.exists(), 60, "the dead letter")
        wait_for(lambda: Notification.objects.filter(state=Notification.State.FAILED).exists(), 60, "a failed SMS")
        metrics_refresh()  # the hourly table, as beat's task would

        with running_prometheus(tmp_path / "prometheus", ports) as prometheus:
            # Every target answers, and what the flow did has reached Prometheus.
            def scraped() -> bool:
                up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
                wanted = ['lottery_stakes_total{outcome="dead_lettered"}', "lottery_draws_total",
                          'lottery_sms_messages_total{outcome="failed"}', "lottery_heartbeat_age_seconds"]  # fmt: skip
                return up == {job: "1" for job in ports} and all(prometheus.query(w) for w in wanted)

            wait_for(scraped, 60, "every target up and the flow's metrics scraped")
            time.sleep(5)  # a few more scrapes: rates need two samples
            check_dashboards(prometheus)
            check_alerts(prometheus)
    check_business_sql()


def check_dashboards(prometheus: Prometheus) -> None:
    variables = {"view": ".*"}  # the view variable at All (its allValue)
    empty = []
    board = json.loads((GRAFANA / "dashboards" / "platform.json").read_text())
    for variable in board["templating"]["list"]:
        query = variable["query"]["query"]
        label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
        assert label, query
        assert prometheus.get(f"/api/v1/label/{label.group(2)}/values", **{"match[]": label.group(1)}), query
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel["targets"]:
                if "expr" in target:
                    expr = promql(target["expr"], variables)
                    if not prometheus.query(expr):
                        empty.append(f"{path.name} / {panel['title']}: {expr}")
    assert empty == []


def check_alerts(prometheus: Prometheus) -> None:
    empty = []
    for rule in alert_rules():
        found = selectors(rule["expr"])
        assert found, rule["alert"]
        empty += [f"{rule['alert']}: {s}" for s in found if not prometheus.query(s)]
    assert empty == []
    firing = {rule["alert"]: prometheus.query(rule["expr"]) for rule in alert_rules()}
    # A dead letter arrived within the last 10 minutes: that one says so; everything else is healthy. (The SMS
    # failure was counted before Prometheus's first scrape, so to it the failure rate is 0; promtool's unit
    # tests prove that alert's firing.)
    assert {name for name, result in firing.items() if result} == {"DeadLettersGrowing"}


def check_business_sql() -> None:
    end = timezone.now() + timedelta(hours=1)
    start, end_text = (end - timedelta(days=2)).isoformat(), end.isoformat()
    variables = {"kind": "'daily','drop','pool'"}  # the kind variable at All
    board = json.loads((GRAFANA / "dashboards" / "business.json").read_text())
    empty = []
    for panel in panels(board):
        for target in panel["targets"]:
            query = sql(target["rawSql"], variables, start, end_text)
            with connection.cursor() as cursor:
                cursor.execute(query)
                rows = cursor.fetchall()
                columns = [column.name for column in cursor.description]
            if not rows:
                empty.append(f"{panel['title']}: {query}")
            if target["format"] == "time_series":
                assert columns[0] == "time", panel["title"]
    assert empty == []
