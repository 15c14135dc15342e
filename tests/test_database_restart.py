"""The long-running processes ride out a PostgreSQL restart: they reconnect, say so once, and lose nothing.

Each test runs its processes against a PostgreSQL cluster of its own
(tests.postgres), so restarting it never disturbs the rest of the suite.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from kafka import KafkaProducer

from outbox.events import LIFECYCLE_TOPIC
from tests.concurrency import ROOT, manage_py, wait_for
from tests.kafka import read_messages
from tests.postgres import OwnPostgres

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_broker")]


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    cluster = OwnPostgres().start()
    try:
        yield cluster
    finally:
        cluster.drop()


def write_events(cluster: OwnPostgres, keys: list[str], per_key: int, *, first_seq: int = 0) -> None:
    rows = [
        (str(uuid.uuid4()), key, json.dumps({"seq": seq, "key": key}))
        for seq in range(first_seq, first_seq + per_key)
        for key in keys
    ]
    with psycopg.connect(cluster.url) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO outbox_outboxevent (event_id, event_type, topic, message_type, key, value, headers, state,"
            " attempts, last_error, created_at) VALUES (%s, 'LotteryClosed', %s, 'lotteryClosed', %s, %s, '{}',"
            " 'pending', 0, '', now())",
            [(event_id, LIFECYCLE_TOPIC, key, value) for event_id, key, value in rows],
        )


def test_the_relay_carries_on_after_a_postgresql_restart(own_postgres):
    keys = [f"pg-restart-{uuid.uuid4().hex[:6]}-{n}" for n in range(10)]
    relay = manage_py("relay_outbox", env={"DATABASE_URL": own_postgres.url, "OUTBOX_BACKOFF_MAX_SECONDS": "2"})
    unpublished = "SELECT count(*) FROM outbox_outboxevent WHERE state <> 'published'"
    try:
        write_events(own_postgres, keys, per_key=10)
        wait_for(lambda: own_postgres.query(unpublished)[0][0] == 0, 30, "the first events")

        own_postgres.restart()
        write_events(own_postgres, keys, per_key=10, first_seq=10)
        wait_for(lambda: own_postgres.query(unpublished)[0][0] == 0, 60, "the events written after the restart")
    finally:
        code, _, err = relay.stop()

    assert code == 0, err
    assert err.count("PostgreSQL unavailable") == 1, err  # once per outage, not once per try
    assert "PostgreSQL available again" in err
    assert own_postgres.query("SELECT count(*) FROM outbox_outboxevent WHERE attempts > 0") == [(0,)]
    messages = read_messages(",".join(settings.KAFKA_BOOTSTRAP_SERVERS), [LIFECYCLE_TOPIC], keys=set(keys),
                             expect=200, timeout=30)  # fmt: skip
    for key in keys:
        seen = list(dict.fromkeys(m.value["seq"] for m in messages if m.key == key))
        assert seen == list(range(20)), key


def test_the_stake_consumer_carries_on_after_a_postgresql_restart(own_postgres):
    topic = f"chaos.staked.{uuid.uuid4().hex[:8]}"
    consumer = manage_py(
        "consume_stakes",
        env={"DATABASE_URL": own_postgres.url, "STAKES_TOPIC": topic, "STAKES_CONSUMER_GROUP": f"group-{topic}",
             "OUTBOX_BACKOFF_MAX_SECONDS": "2"},
    )  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    applied = "SELECT count(*) FROM entries_stake"

    def send(first: int, count: int) -> None:
        for n in range(first, first + count):
            body = {"stakeId": f"{topic}-{n}", "playerId": f"p{n % 7}", "gameId": "restart-game",
                    "amount": "1.00", "currency": "EUR", "occurredAt": "2026-12-01T10:00:00+00:00"}  # fmt: skip
            producer.send(topic, key=b"restart-game", value=json.dumps(body).encode(),
                          headers=[("messageType", b"player.stakeCreated")])  # fmt: skip
        producer.flush()

    try:
        send(0, 30)  # a new group reads from the earliest offset: no need to wait for the consumer's start
        wait_for(lambda: own_postgres.query(applied)[0][0] == 30, 60, "the first stakes")

        # Stakes keep coming while the server restarts, so the consumer meets it mid-batch.
        def trickle() -> None:
            for n in range(30, 230):
                send(n, 1)
                time.sleep(0.02)

        sender = threading.Thread(target=trickle)
        sender.start()
        own_postgres.restart()
        sender.join(60)
        wait_for(lambda: own_postgres.query(applied)[0][0] == 230, 90, "the stakes sent during the restart")
    finally:
        producer.close()
        code, _, err = consumer.stop()

    assert code == 0, err
    assert err.count("PostgreSQL unavailable") == 1, err  # met mid-batch, said once
    assert "PostgreSQL available again" in err
    counted = own_postgres.query("SELECT sum(received), sum(applied), sum(duplicate), sum(dead_lettered)"
                                 " FROM outbox_consumercounter")  # fmt: skip
    assert counted == [(230, 230, 0, 0)]  # received = applied: each stake exactly once


def test_a_celery_worker_carries_on_after_a_postgresql_restart(own_postgres):
    from celery import Celery

    # A Redis database of this test's own for the worker's queue: the suite flushes its usual one.
    broker_url = "redis://127.0.0.1:6379/9"
    keys = [f"worker-restart-{uuid.uuid4().hex[:6]}-{n}" for n in range(5)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "lottery_site", "worker", "--pool", "prefork", "--concurrency", "1",
         "--loglevel", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": own_postgres.url,
             "CELERY_BROKER_URL": broker_url, "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    client = Celery(broker=broker_url)
    unpublished = "SELECT count(*) FROM outbox_outboxevent WHERE state <> 'published'"

    def relay_until_published(what: str) -> None:
        deadline = time.monotonic() + 90
        while own_postgres.query(unpublished)[0][0]:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            client.send_task("outbox.tasks.relay_outbox")  # what beat's sweep does
            time.sleep(1)

    try:
        write_events(own_postgres, keys, per_key=5)
        relay_until_published("the events written before the restart")

        own_postgres.restart()
        write_events(own_postgres, keys, per_key=5, first_seq=5)
        relay_until_published("the events written after the restart")
        assert worker.poll() is None, "the worker died"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        client.close()
    messages = read_messages(",".join(settings.KAFKA_BOOTSTRAP_SERVERS), [LIFECYCLE_TOPIC], keys=set(keys),
                             expect=50, timeout=30)  # fmt: skip
    for key in keys:
        assert list(dict.fromkeys(m.value["seq"] for m in messages if m.key == key)) == list(range(10)), err
