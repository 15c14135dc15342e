"""Readiness's pipeline section: is anything stuck between the outbox and the consumers?"""

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from outbox import pipeline
from outbox.coordination import redis_client
from outbox.models import OutboxEvent
from tests.concurrency import manage_py
from tests.kafka import free_port
from tests.metrics import parse, value

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("kafka_broker")]


@pytest.fixture(autouse=True)
def _fresh_beats():
    pipeline._last_beat.clear()


def beat_all() -> None:
    for process in pipeline.PROCESSES:
        pipeline.heartbeat(process)


def event(state: str, age: timedelta) -> None:
    OutboxEvent.objects.create(event_type="LotteryOpened", topic="lottery.v1.lifecycle", message_type="lotteryOpened",
                               key=f"k-{uuid.uuid4()}", value="{}", state=state,
                               created_at=timezone.now() - age)  # fmt: skip


def ready() -> tuple[int, dict[str, Any]]:
    response = Client().get("/health/ready")
    return response.status_code, response.json()


def test_a_moving_pipeline_is_ok():
    beat_all()
    event(OutboxEvent.State.PENDING, timedelta(seconds=5))  # young: the relay will get to it

    status, body = ready()

    assert status == 200
    assert body["pipeline"]["status"] == "ok", body
    assert body["pipeline"]["reasons"] == []
    assert all(age < 5 for age in body["pipeline"]["heartbeat_age_seconds"].values())


def test_a_parked_event_or_a_stalled_outbox_degrades_the_pipeline_but_not_readiness(settings):
    settings.OUTBOX_STALL_SECONDS = 60
    beat_all()
    event(OutboxEvent.State.FAILED, timedelta(seconds=1))
    event(OutboxEvent.State.PENDING, timedelta(seconds=90))

    status, body = ready()

    assert status == 200  # a web process can still serve: it stays in the load balancer
    assert body["status"] == "ok"
    pipe = body["pipeline"]
    assert pipe["status"] == "degraded"
    assert [reason.split(":")[0] for reason in pipe["reasons"]] == ["outbox_stalled", "parked_events"]
    assert pipe["parked_events"] == 1 and pipe["oldest_pending_age_seconds"] >= 90


def test_a_silent_relay_or_consumer_degrades_the_pipeline(settings):
    settings.HEARTBEAT_STALE_SECONDS = 30
    redis_client().set("lottery:heartbeat:relay", repr(time.time() - 45))

    _, body = ready()

    assert [reason.split(":")[0] for reason in body["pipeline"]["reasons"]] == [
        "relay_heartbeat_stale",
        "consumer_heartbeat_missing",
    ]


def test_metrics_show_the_pipeline_and_the_heartbeats():
    pipeline.heartbeat(pipeline.RELAY)

    body = Client().get("/metrics").content.decode()

    assert "lottery_pipeline_degraded 1.0" in body  # the consumer has never beaten
    assert 'lottery_heartbeat_age_seconds{process="relay"}' in body
    assert 'lottery_heartbeat_age_seconds{process="consumer"}' not in body


def test_metrics_show_what_readiness_judges_by_and_its_limits(settings):
    settings.OUTBOX_STALL_SECONDS, settings.HEARTBEAT_STALE_SECONDS = 60, 30
    pipeline.heartbeat(pipeline.RELAY)  # the consumer has never beaten
    event(OutboxEvent.State.PENDING, timedelta(seconds=90))
    event(OutboxEvent.State.FAILED, timedelta(seconds=300))

    samples = parse(Client().get("/metrics").content.decode())

    # (the database's now() is the test transaction's start, a moment before the rows were made)
    assert 85 <= (value(samples, "lottery_outbox_oldest_pending_age_seconds") or 0) < 120
    assert 295 <= (value(samples, "lottery_outbox_oldest_unpublished_age_seconds") or 0) < 330
    assert value(samples, "lottery_pipeline_limit_seconds", figure="outbox_stall") == 60
    assert value(samples, "lottery_pipeline_limit_seconds", figure="heartbeat_stale") == 30
    problems = {
        dict(labels)["problem"]: v for (name, labels), v in samples.items() if name == "lottery_pipeline_problem"
    }
    assert problems == {
        "outbox_stalled": 1, "parked_events": 1, "consumer_heartbeat_missing": 1,
        "relay_heartbeat_stale": 0, "relay_heartbeat_missing": 0, "consumer_heartbeat_stale": 0,
        "pipeline_unreadable": 0,
    }  # fmt: skip


def test_metrics_say_the_pipeline_is_degraded_and_unreadable_while_redis_cannot_be_asked(settings):
    beat_all()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_client.cache_clear()
    try:
        status, body = ready()
        samples = parse(Client().get("/metrics").content.decode())
    finally:
        redis_client.cache_clear()

    assert status == 503 and body["pipeline"]["status"] == "unknown", body
    # the heartbeat and outbox alerts cannot see anything: the scrape says so, for PipelineUnreadable
    assert value(samples, "lottery_pipeline_degraded") == 1
    assert value(samples, "lottery_pipeline_problem", problem="pipeline_unreadable") == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("command", "process"), [("relay_outbox", "relay"), ("consume_stakes", "consumer")])
def test_the_long_running_processes_beat(command, process):
    # A group and topic of this test's own, as every consumer test has: this
    # one stops its consumer as soon as it beats, maybe in the middle of its
    # group join, and the next test's consumer must not inherit that group.
    suffix = uuid.uuid4().hex[:8]
    running = manage_py(command, env={"STAKES_CONSUMER_GROUP": f"beat-{suffix}", "STAKES_TOPIC": f"beat-{suffix}"})
    try:
        deadline = time.monotonic() + 60
        while redis_client().get(f"lottery:heartbeat:{process}") is None:
            assert time.monotonic() < deadline, f"{command} never beat"
            time.sleep(0.2)
    finally:
        code, _, err = running.stop()
    assert code == 0, err
    _, body = ready()
    assert body["pipeline"]["heartbeat_age_seconds"][process] < 30
