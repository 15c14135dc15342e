"""Traces across the real processes: web (gunicorn), worker (Celery, prefork), relay and consumer.

Each process exports its spans over OTLP/HTTP to a receiver in this test
(``tests.otlp``), as it would to Jaeger or a collector. Each flow must be one
trace from its first request to the Kafka message at its end, parented or
linked as docs/observability.md#traces describes. The processes run once for
the module; each one's output is in files (``Service.log_path``: stderr,
where every log line goes; ``Service.out_path``: stdout), for the checks of
what they logged.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from draws.models import LotteryAward
from lotteries.models import Lottery
from notifications.models import Notification
from outbox.events import AWARD_TOPIC, ENTRY_TOPIC
from outbox.kafka import ensure_topics
from outbox.models import OutboxEvent
from tests.concurrency import log_lines, wait_for
from tests.kafka import Message, free_port, read_messages
from tests.otlp import Receiver, Span, receiver
from tests.servers import answers, call_json

ROOT = Path(__file__).resolve().parent.parent
STAKES_TOKEN = "test-stakes-token-0000"  # tests.settings
RELAYS = {"relay", "worker"}  # the relay command, or the relay task a commit kicks in the worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@dataclass
class Service:
    """One of the platform's processes, its stderr (the log) and stdout in files."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    out_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Service":
        with self.log_path.open("wb") as log, self.out_path.open("wb") as out:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=log)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") + self.out_path.read_text(errors="replace")

    def log(self) -> list[dict[str, Any]]:
        """Its log (stderr) so far, line by line: fails on a line that is not one JSON object."""
        return log_lines(self.log_path.read_text(errors="replace"))

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, f"{self.name} exited:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name} did not write {text!r}:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM (unless sent already), then wait; killed if it outlives 30 s."""
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Platform:
    receiver: Receiver
    env: dict[str, str]
    web_url: str
    services: dict[str, Service] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        return call_json(method, self.web_url + path, body, **headers)

    def run(self, *args: str) -> str:
        """``manage.py`` run to the end as a one-off command (service ``cli``), traced like the others."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def platform(django_db_setup, kafka_broker, tmp_path_factory) -> Iterator[Platform]:
    """web, worker, relay and consumer, traced (sampling everything), exporting to a receiver of this module."""
    logs = tmp_path_factory.mktemp("traced-processes")
    suffix = uuid.uuid4().hex[:8]
    stakes_topic = f"player.v1.staked.traces-{suffix}"
    ensure_topics([stakes_topic, f"{stakes_topic}.dlq"])
    db = settings.DATABASES["default"]
    port = free_port()
    with receiver() as otlp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
            "OTEL_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_TRACES_SAMPLE_RATIO": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's: export within a tenth of a second
            "STAKES_TOPIC": stakes_topic,
            "STAKES_DLQ_TOPIC": f"{stakes_topic}.dlq",
            "STAKES_CONSUMER_GROUP": f"traces-{suffix}",
            "SMS_LATENCY_MIN_MS": "0",
            "SMS_LATENCY_MAX_MS": "0",
            "SMS_FAILURE_RATE": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "1",
            "GUNICORN_THREADS": "2",
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        commands = {
            "web": [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")],
            "worker": [sys.executable, "-m", "celery", "--app", "lottery_site", "worker", "--pool", "prefork",
                       "--concurrency", "1", "--queues", f"celery,{settings.NOTIFICATIONS_QUEUE}",
                       "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
            "relay": [*manage, "relay_outbox"],
            "consumer": [*manage, "consume_stakes"],
        }  # fmt: skip
        platform = Platform(receiver=otlp, env=env, web_url=f"http://127.0.0.1:{port}")
        try:
            for name, argv in commands.items():
                platform.services[name] = Service(name, argv, env, logs / f"{name}.log", logs / f"{name}.out").start()
            platform.services["worker"].wait_for_output(" ready.")
            platform.services["relay"].wait_for_output('"relay started"')
            platform.services["consumer"].wait_for_output('"consumer started"')
            wait_for(lambda: answers(f"{platform.web_url}/health/live"), 60, "gunicorn to answer")
            yield platform
        finally:
            for service in platform.services.values():
                service.terminate()  # all at once: each takes seconds to finish its work
            for service in platform.services.values():
                service.stop()


# --- Looking at spans ----------------------------------------------------------------


def one(spans: list[Span], what: str, match: Callable[[Span], bool]) -> Span:
    found = [span for span in spans if match(span)]
    assert len(found) == 1, f"{what}: {found or spans}"
    return found[0]


def with_attribute(name: str, value: Any) -> Callable[[list[Span]], list[Span]]:
    return lambda spans: [span for span in spans if span.attributes.get(name) == value]


def traceparent_headers(message: Message) -> list[str]:
    return [value for name, value in message.header_list if name == "traceparent"]


def assert_carries(message: Message, send: Span) -> None:
    """The message has exactly one traceparent, its send span's (no instrumentation added a second)."""
    [traceparent] = traceparent_headers(message)
    assert send.is_named_by(traceparent), (message.header_list, send)


# --- The ballot ---------------------------------------------------------------------


def test_a_callers_traceparent_is_a_link_of_the_requests_own_trace_never_its_parent(platform):
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

    status, _ = platform.request(
        "GET", "/api/v1/lotteries?from=caller", traceparent=f"00-{caller_trace}-{caller_span}-01",
        X_Request_ID="caller-trace-1",
    )  # fmt: skip

    assert status == 200
    [server] = platform.receiver.wait_for(
        lambda spans: [s for s in spans if s.kind == "server" and "from=caller" in str(s.attributes)],
        what="the request's span",
    )
    # a trace of its own (the caller cannot pick its id, nor its sampling), linking the caller's span
    assert server.trace_id != caller_trace and server.parent_id == ""
    assert (caller_trace, caller_span) in server.links
    web_log = platform.services["web"].log()
    [finished] = [line for line in web_log if line.get("request_id") == "caller-trace-1"][-1:]
    assert finished["trace_id"] == server.trace_id
    # set up after gunicorn's fork, with the platform's logging already on: its own line says so
    assert any(line["event"].startswith("tracing on as web") and line["service"] == "web" for line in web_log)


def test_a_ballot_is_one_trace_from_the_request_to_its_kafka_message(platform, make_lottery, make_player):
    lottery = make_lottery()
    token = Token.objects.create(user=make_player())

    status, ballot = platform.request(
        "POST", f"/api/v1/lotteries/{lottery.pk}/ballots", Authorization=f"Token {token.key}"
    )

    assert status == 201, ballot
    row = OutboxEvent.objects.get(event_type="LotteryEntryCreated", key=str(lottery.pk))
    event_id = str(row.event_id)
    [message] = read_messages(settings.KAFKA_BOOTSTRAP_SERVERS[0], [ENTRY_TOPIC], keys={str(lottery.pk)}, expect=1)
    assert message.value["id"] == event_id
    otlp = platform.receiver
    submit = otlp.wait_for(with_attribute("ballot.id", ballot["id"]), what="the ballot's span")[0]
    send = otlp.wait_for(
        lambda spans: [s for s in spans if s.kind == "producer" and s.attributes.get("event.id") == event_id],
        what="the relay's send span",
    )[0]
    trace_id = submit.trace_id
    spans = otlp.trace(trace_id)

    server = one(spans, "the request", lambda s: s.kind == "server")
    assert (server.service, server.parent_id) == ("web", "")
    assert "ballots" in server.name
    assert (submit.service, submit.name, submit.parent_id) == ("web", "ballot submit", server.span_id)
    assert submit.attributes["lottery.id"] == lottery.pk
    # One statement stores the ballot and its outbox row (entries.services): psycopg's span of it is the
    # submit span's child, and the row keeps the submit span's traceparent, taken when it was written.
    assert (submit.attributes["event.id"], submit.attributes["event.type"]) == (event_id, "LotteryEntryCreated")
    statements = [s for s in spans if s.kind == "client" and s.attributes.get("db.system") == "postgresql"]
    assert submit.span_id in {s.parent_id for s in statements}, statements
    assert list(row.headers) == ["traceparent"] and submit.is_named_by(row.headers["traceparent"])
    # The relay's send is the row's child, in the same trace.
    publish = submit
    assert send.trace_id == trace_id
    assert (send.parent_id, send.name) == (publish.span_id, f"{ENTRY_TOPIC} send")
    assert send.service in RELAYS
    assert_carries(message, send)
    # The relay's batch is a trace of its own, linked to the trace of each row it carries (a batch that
    # did not get its acknowledgement in time leaves the row to the next one: both link to it).
    batches = [s for s in otlp.all() if s.name == "outbox relay batch" and (trace_id, publish.span_id) in s.links]
    assert batches, "no relay batch links to the row"
    assert send.service in {batch.service for batch in batches}
    assert all(batch.parent_id == "" and batch.trace_id != trace_id for batch in batches), batches
    assert {s.service for s in spans} <= {"web", *RELAYS}
    # Every line of every process is JSON; the request's lines (those of its request_id) carry its trace.
    logs = {name: service.log() for name, service in platform.services.items()}
    # Each process names itself on every line, from its first one (none says "cli").
    assert {name: {line["service"] for line in lines} for name, lines in logs.items()} == {
        name: {name} for name in logs
    }
    traced = [line for line in logs["web"] if line.get("trace_id") == trace_id]
    assert traced, logs["web"][-20:]
    request_ids = {line["request_id"] for line in traced} - {None}
    assert len(request_ids) == 1, traced
    of_request = [line for line in logs["web"] if line.get("request_id") in request_ids]
    assert {line["trace_id"] for line in of_request} == {trace_id}, of_request
    assert any(line["event"] == "request_finished" for line in of_request), of_request


# --- The stake ----------------------------------------------------------------------


def test_stakes_filling_a_pool_are_one_trace_from_the_filling_stake_to_the_award_on_kafka(platform):
    game = f"traced-{uuid.uuid4().hex[:8]}"
    stake_ids = [f"{game}-stake-{n}" for n in (1, 2, 3)]
    for n, stake_id in enumerate(stake_ids, start=1):
        body = {"stakeId": stake_id, "playerId": f"{game}-p{n}", "gameId": game, "amount": "5.00", "currency": "EUR"}
        status, answer = platform.request("POST", "/api/v1/stakes", body, X_Internal_Token=STAKES_TOKEN)
        assert status == 202, answer

    wait_for(lambda: LotteryAward.objects.filter(lottery__game_id=game).exists(), 60, "the pool's award")
    pool = Lottery.objects.get(game_id=game)
    award = LotteryAward.objects.get(lottery=pool)
    stakes_topic = platform.env["STAKES_TOPIC"]
    bootstrap = settings.KAFKA_BOOTSTRAP_SERVERS[0]
    stake_messages = {m.value["stakeId"]: m for m in read_messages(bootstrap, [stakes_topic], keys={game}, expect=3)}
    award_messages = read_messages(bootstrap, [AWARD_TOPIC], keys={str(pool.pk)}, expect=1)
    [award_message] = [m for m in award_messages if m.value["type"] == "AwardCreated"]
    otlp = platform.receiver
    award_event_id = award_message.value["id"]
    award_send = otlp.wait_for(
        lambda spans: [s for s in spans if s.kind == "producer" and s.attributes.get("event.id") == award_event_id],
        what="the award's send span",
    )[0]

    # Each stake: the door's request, its send (whose traceparent the message carries), the consumer's span.
    process: dict[str, Span] = {}
    for stake_id in stake_ids:
        door = otlp.wait_for(with_attribute("stake.id", stake_id), what=f"{stake_id}'s spans")
        produce = one(door, "the door's span", lambda s: s.name == "stake produce")
        spans = otlp.trace(produce.trace_id)
        server = one(spans, "the request", lambda s: s.kind == "server")
        assert (server.service, produce.service, produce.parent_id) == ("web", "web", server.span_id)
        send = one(spans, "the door's send", lambda s: s.name == f"{stakes_topic} send")
        assert send.parent_id == produce.span_id
        assert_carries(stake_messages[stake_id], send)
        process[stake_id] = one(spans, "the consumer's span", lambda s: s.name == f"{stakes_topic} process")
        assert (process[stake_id].service, process[stake_id].kind) == ("consumer", "consumer")
        assert process[stake_id].parent_id == send.span_id
        assert process[stake_id].attributes["stake.id"] == stake_id

    # Each consumer batch is a trace of its own, linked to every message it took.
    batches = [s for s in otlp.all() if s.name == f"{stakes_topic} batch"]
    for batch in batches:
        assert batch.parent_id == "" and len(batch.links) == batch.attributes["messaging.batch.message_count"]
    for stake_id in stake_ids:
        message_span = (process[stake_id].trace_id, process[stake_id].parent_id)
        assert sum(message_span in batch.links for batch in batches) == 1, (stake_id, batches)

    # The pool continues the trace of the stake that filled it and links to the other two.
    filling = process[stake_ids[2]]
    trace_id = filling.trace_id
    spans = otlp.trace(trace_id)
    fill = one(spans, "the pool's fill", lambda s: s.name == "pool fill")
    assert (fill.service, fill.parent_id) == ("consumer", filling.span_id)
    assert (fill.attributes["lottery.id"], fill.attributes["stake.id"]) == (pool.pk, stake_ids[2])
    assert set(fill.links) == {(process[s].trace_id, process[s].span_id) for s in stake_ids[:2]}
    queued = one(spans, "the draw's queueing", lambda s: s.name == "apply_async/lifecycle.tasks.draw_lotteries")
    assert (queued.service, queued.parent_id) == ("consumer", fill.span_id)
    task = one(spans, "the draw task", lambda s: s.name == "run/lifecycle.tasks.draw_lotteries")
    assert (task.service, task.parent_id) == ("worker", queued.span_id)
    close = one(spans, "the draw", lambda s: s.name == "lottery close")
    assert close.parent_id == task.span_id
    assert (close.attributes["lottery.id"], close.attributes["draw.id"]) == (pool.pk, award.draw_id)
    assert close.attributes["award.id"] == [award.pk]
    publish = one(
        spans,
        "the award's outbox write",
        lambda s: s.name == "outbox publish" and s.attributes["event.id"] == award_event_id,
    )
    assert publish.parent_id == close.span_id
    assert award_send.trace_id == trace_id
    assert (award_send.parent_id, award_send.name) == (publish.span_id, f"{AWARD_TOPIC} send")
    assert award_send.service in RELAYS
    assert_carries(award_message, award_send)
    assert {s.service for s in spans} <= {"web", "consumer", *RELAYS}


# --- A close by command, to the winner's SMS ----------------------------------------------


def test_a_close_by_command_is_one_trace_through_the_draw_the_award_event_and_the_winners_sms(
    platform, make_lottery, make_player, enter
):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))

    platform.run("close_lotteries", "--lottery", str(lottery.pk))

    notification = Notification.objects.get(lottery=lottery, kind="winner")
    wait_for(lambda: Notification.objects.get(pk=notification.pk).state == "sent", 60, "the winner's SMS")
    award_event = OutboxEvent.objects.get(event_type="AwardCreated", key=str(lottery.pk))
    otlp = platform.receiver
    command = otlp.wait_for(
        lambda spans: [
            s for s in spans if s.name == "close_lotteries" and s.attributes.get("lottery.id") == lottery.pk
        ],
        what="the command's span",
    )[0]
    assert (command.service, command.parent_id) == ("cli", "")
    otlp.wait_for(with_attribute("notification.id", notification.pk), what="the SMS's span")
    otlp.wait_for(with_attribute("event.id", str(award_event.event_id)), what="the award's send")
    spans = otlp.trace(command.trace_id)

    close = one(spans, "the close", lambda s: s.name == "lottery close")
    assert (close.service, close.parent_id, close.attributes["lottery.id"]) == ("cli", command.span_id, lottery.pk)
    publishes = [s for s in spans if s.name == "outbox publish" and s.attributes.get("event.type") == "AwardCreated"]
    assert [s.parent_id for s in publishes] == [close.span_id]
    send = one(spans, "the award's send", lambda s: s.name == f"{AWARD_TOPIC} send")
    assert send.parent_id == publishes[0].span_id
    queued = one(spans, "the SMS's queueing", lambda s: s.name == "apply_async/notifications.tasks.send_notification")
    task = one(spans, "the SMS task", lambda s: s.name == "run/notifications.tasks.send_notification")
    sms = one(spans, "the SMS", lambda s: s.name == "sms send")
    assert (queued.service, task.service, sms.service) == ("cli", "worker", "worker")
    assert (task.parent_id, sms.parent_id) == (queued.span_id, task.span_id)
    assert sms.attributes["sms.sent"] == 1
