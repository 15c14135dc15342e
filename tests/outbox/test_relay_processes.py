"""Relay processes against a real broker: outages, restarts, several relays at once."""

import json
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client

from outbox.events import LIFECYCLE_TOPIC, DomainEvent
from outbox.models import OutboxEvent
from outbox.relay import RelayBrokerDown, relay_batch
from outbox.services import publish
from tests.concurrency import log_lines, manage_py
from tests.kafka import Broker, free_port, read_messages
from tests.metrics import refused_status, value, wait_for_scrape

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def write_events(count: int, keys: list[str], *, per_transaction: int = 10) -> None:
    """``count`` events spread over ``keys``; data.seq is each key's own running number."""
    seq: dict[str, int] = defaultdict(int)
    for start in range(0, count, per_transaction):
        with transaction.atomic():
            events = []
            for n in range(start, min(count, start + per_transaction)):
                key = keys[n % len(keys)]
                events.append(
                    DomainEvent(
                        type="LotteryClosed", aggregate_type="lottery", aggregate_id=key, data={"seq": seq[key]}
                    )
                )
                seq[key] += 1
            publish(*events)


def wait_until_published(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while OutboxEvent.objects.exclude(state="published").exists():
        assert time.monotonic() < deadline, (
            f"{OutboxEvent.objects.exclude(state='published').count()} still unpublished"
        )
        time.sleep(0.2)


def backlog_metric() -> float:
    body = Client().get("/metrics").content.decode()
    match = re.search(r"^lottery_outbox_backlog (\S+)$", body, re.M)
    assert match, "the backlog metric is missing"
    return float(match.group(1))


def assert_per_key_order(messages, keys: list[str], per_key: int) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        by_key[message.key].append(message.value["data"]["seq"])
    for key in keys:
        first_seen = list(dict.fromkeys(by_key[key]))  # a resent duplicate does not reorder
        assert first_seen == list(range(per_key)), f"key {key}: {by_key[key][:20]}..."


@pytest.fixture
def own_broker(tmp_path, settings) -> Iterator[Broker]:
    """A broker of this test's own, which it may stop and restart."""
    from outbox.kafka import reset_producer

    broker = Broker(tmp_path / "tansu.log").start()
    settings.KAFKA_BOOTSTRAP_SERVERS = [broker.bootstrap]
    reset_producer()
    yield broker
    reset_producer()
    broker.stop()


def stop(process) -> list[dict[str, Any]]:
    """Stop it; its log lines."""
    returncode, _, err = process.stop()
    assert returncode == 0, err
    return log_lines(err)


def test_events_written_while_the_broker_is_down_all_arrive_after_it_restarts(own_broker):
    keys = [f"outage-{n}" for n in range(10)]
    relay = manage_py("relay_outbox", env={"KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap})
    try:
        write_events(20, keys)  # the relay is up and publishing
        wait_until_published(20)

        own_broker.stop()
        OutboxEvent.objects.all().delete()
        write_events(500, keys)
        time.sleep(2)  # the relay tries, fails, backs off
        with pytest.raises(RelayBrokerDown):
            relay_batch()  # and so would any other relay
        assert backlog_metric() == 500

        # A restarted Tansu has forgotten topics, offsets and producer ids.
        own_broker.start()
        wait_until_published(90)
        assert backlog_metric() == 0
    finally:
        log = stop(relay)
    assert "relay stopped" in [line["event"] for line in log]
    # kafka-python's complaints about the outage, each kind once (core.logs.RepeatedBrokerLines), not several a second
    kinds = Counter(
        (line["logger"], re.sub(r"[0-9.]+", "#", line["event"]))
        for line in log
        if line["logger"].startswith("kafka.") and line["level"] in ("warning", "error")
    )
    assert kinds, "the relay's log shows no sign of the outage"
    assert max(kinds.values()) == 1, kinds

    messages = read_messages(own_broker.bootstrap, [LIFECYCLE_TOPIC], keys=set(keys), expect=500, timeout=30)
    assert_per_key_order(messages, keys, per_key=50)


def test_relay_once_says_what_it_published_even_when_nothing_waited(kafka_broker):
    write_events(3, ["once-a"])
    first = manage_py("relay_outbox", "--once")
    returncode, out, err = first.wait(timeout=60)
    assert (returncode, out.strip()) == (0, "published 3, failed 0"), err
    assert "relay stopped" in [line["event"] for line in log_lines(err)]

    returncode, out, err = manage_py("relay_outbox", "--once").wait(timeout=60)  # the outbox is empty now

    assert (returncode, out.strip()) == (0, "published 0, failed 0"), err
    assert "relay stopped" in [line["event"] for line in log_lines(err)]


def test_relay_once_stopped_by_a_signal_says_what_it_published_and_that_more_waits(kafka_broker):
    total = 20 * settings.OUTBOX_BATCH_SIZE
    write_events(total, [f"stopped-{n}" for n in range(20)], per_transaction=settings.OUTBOX_BATCH_SIZE)
    relay = manage_py("relay_outbox", "--once")
    deadline = time.monotonic() + 60
    while not OutboxEvent.objects.filter(state="published").exists():
        assert relay.process.poll() is None and time.monotonic() < deadline, "the relay published nothing"
        time.sleep(0.01)
    # The relay's next claim waits on this lock while SIGTERM arrives; released, its batch in hand
    # finishes and the drain stops there, with most of the outbox still waiting.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {OutboxEvent._meta.db_table} IN EXCLUSIVE MODE")
        relay.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)

    returncode, out, err = relay.wait(timeout=60)

    published = OutboxEvent.objects.filter(state="published").count()
    assert returncode == 0, err
    assert out.strip() == f"published {published}, failed 0; stopped before the outbox was empty"
    assert 0 < published < total
    assert "relay stopped" in [line["event"] for line in log_lines(err)]


def test_two_relays_at_once_deliver_every_event_once_and_in_order_per_key(kafka_broker):
    keys = [f"pair-{n}" for n in range(50)]
    relays = [manage_py("relay_outbox") for _ in range(2)]
    try:
        for relay in relays:  # both relaying before the load starts, so both can stop cleanly
            relay.wait_for_log("relay started")
        write_events(2000, keys, per_transaction=20)
        wait_until_published(90)
    finally:
        stopped = [relay.stop() for relay in relays]  # every one, before any assertion
    logs = [log_lines(err) for _, _, err in stopped]
    assert [code for code, _, _ in stopped] == [0, 0], [err for _, _, err in stopped]

    messages = read_messages(kafka_broker.bootstrap, [LIFECYCLE_TOPIC], keys=set(keys), expect=2000, timeout=30)
    assert len(messages) == 2000  # nothing lost, and with no crash nothing doubled
    assert len({m.headers["event-id"] for m in messages}) == 2000
    assert_per_key_order(messages, keys, per_key=40)
    # Both ran side by side to the end; which one published what depends on
    # who held the earlier rows of each key, and is not for the test to fix.
    assert all("relay stopped" in [line["event"] for line in log] for log in logs)


def test_the_relays_lines_are_json_quiet_while_it_finds_nothing_and_one_per_batch_with_its_counts(kafka_broker):
    relay = manage_py("relay_outbox")
    try:
        relay.wait_for_log("relay started")
        time.sleep(0.5)
        before = relay.log()
        time.sleep(1.5)  # thirty polls of an empty outbox
        idle = relay.log()[len(before) :]
        write_events(3, ["logged-1", "logged-2"])
        batch = relay.wait_for_log("outbox batch", published=3)
    finally:
        log = stop(relay)

    assert idle == []  # nothing found: nothing said
    assert (batch["level"], batch["service"], batch["batch_size"]) == ("info", "relay", settings.OUTBOX_BATCH_SIZE)
    assert (batch["claimed"], batch["failed"], batch["held_back"]) == (3, 0, 0)
    assert batch["duration_ms"] >= 0
    assert log[-1]["event"] == "relay stopped"


def test_a_long_lived_producer_recovers_from_a_broker_restart_without_parking_anything(own_broker):
    # given a producer that has published, as a Celery pool process's has
    keys = [f"restart-{n}" for n in range(40)]
    write_events(40, keys)
    while relay_batch().claimed:
        pass
    assert not OutboxEvent.objects.exclude(state="published").exists()

    # when the broker restarts, forgetting every producer id, and events keep coming
    own_broker.stop()
    own_broker.start()
    OutboxEvent.objects.all().delete()
    write_events(400, keys)
    deadline = time.monotonic() + 60
    while OutboxEvent.objects.exclude(state="published").exists() and time.monotonic() < deadline:
        try:
            relay_batch()
        except RelayBrokerDown:
            time.sleep(0.5)  # what the task's pause does, shortened

    # then everything is published by the same process, and no event was blamed for the broker's amnesia
    assert set(OutboxEvent.objects.order_by().values_list("state", "attempts").distinct()) == {("published", 0)}
    messages = read_messages(own_broker.bootstrap, [LIFECYCLE_TOPIC], keys=set(keys), expect=400, timeout=30)
    assert_per_key_order(messages, keys, per_key=10)


def test_the_relay_answers_its_own_metrics_port_to_the_allowed_callers_only(kafka_broker):
    port = free_port()
    # no network may scrape here: only the token
    env = {"RELAY_METRICS_PORT": str(port), "METRICS_ALLOWED_CIDRS": "", "METRICS_TOKEN": "relay-scrape-token"}
    relay = manage_py("relay_outbox", env=env)
    try:
        relay.wait_for_log("relay started")
        write_events(30, [f"metrics-{n}" for n in range(3)])
        wait_until_published(30)
        samples = wait_for_scrape(
            port,
            lambda s: value(s, "lottery_outbox_published_total", event_type="LotteryClosed") == 30,
            token="relay-scrape-token",
            what="30 events published by the relay",
        )
        status, body = refused_status(port)
    finally:
        stop(relay)

    assert value(samples, "lottery_outbox_publish_lag_seconds_count") == 30
    assert (value(samples, "lottery_outbox_batch_duration_seconds_count") or 0) >= 1
    assert "lottery_outbox_backlog" not in {name for name, _ in samples}  # web's, read from the database
    assert status == 403
    assert json.loads(body)["error"]["code"] == "permission_denied"
