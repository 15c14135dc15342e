"""Parking and replay, purge, kicks, trace context, and the producer across a fork."""

import json
import os
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from lottery_site.celery import app as celery_app
from outbox import kafka
from outbox.coordination import PENDING_KEY as RELAY_PENDING_KEY
from outbox.coordination import redis_client
from outbox.events import LIFECYCLE_TOPIC, DomainEvent
from outbox.models import OutboxEvent
from outbox.relay import drain
from outbox.services import publish, purge_published
from outbox.tasks import relay_outbox
from tests.kafka import read_messages


def closed_event(key: str, **data) -> DomainEvent:
    return DomainEvent(type="LotteryClosed", aggregate_type="lottery", aggregate_id=key, data=data)


@pytest.mark.django_db(transaction=True)
def test_an_event_failing_on_its_own_is_parked_holds_its_key_back_and_replays_from_admin(
    kafka_broker, settings, make_player, client
):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    with transaction.atomic():
        # Over the producer's 1 MB request limit: Kafka refuses this message, whatever the broker's health.
        publish(closed_event("parked", step=1, blob="x" * 1_100_000), closed_event("parked", step=2))
        publish(closed_event("bystander", step=1))
    too_big, behind = OutboxEvent.objects.filter(key="parked").order_by("id")

    drain(budget_seconds=10)
    drain(budget_seconds=10)

    too_big.refresh_from_db()
    behind.refresh_from_db()
    assert (too_big.state, too_big.attempts) == ("failed", 2)
    assert "MessageSizeTooLarge" in too_big.last_error
    assert (behind.state, behind.attempts) == ("pending", 0)  # waits behind it: order is never broken
    assert OutboxEvent.objects.get(key="bystander").state == "published"  # other keys carry on

    staff = make_player(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    changelist = reverse("admin:outbox_outboxevent_changelist")
    page = client.get(changelist, {"state__exact": "failed"})
    assert page.status_code == 200
    assert "MessageSizeTooLarge" in page.content.decode()

    # The cause is removed (here: the payload shrunk), then staff replay it.
    envelope = json.loads(too_big.value)
    envelope["data"]["blob"] = "fixed"
    OutboxEvent.objects.filter(pk=too_big.pk).update(value=json.dumps(envelope))
    response = client.post(changelist, {"action": "replay", ACTION_CHECKBOX_NAME: [too_big.pk, behind.pk]})
    assert response.status_code == 302
    too_big.refresh_from_db()
    assert (too_big.state, too_big.attempts) == ("pending", 0)

    drain(budget_seconds=10)

    assert set(OutboxEvent.objects.filter(key="parked").values_list("state", flat=True)) == {"published"}
    messages = read_messages(kafka_broker.bootstrap, [LIFECYCLE_TOPIC], keys={"parked"}, expect=2)
    assert [m.value["data"]["step"] for m in messages] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_parked_event_does_not_starve_the_other_keys(kafka_broker, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    settings.OUTBOX_BATCH_SIZE = 2
    with transaction.atomic():
        publish(closed_event("stuck", blob="x" * 1_100_000))
    drain(budget_seconds=10)  # parked at once
    with transaction.atomic():
        publish(*[closed_event("stuck", n=n) for n in range(4)])  # all behind it, more than a batch
        publish(closed_event("free"))

    drain(budget_seconds=10)

    assert OutboxEvent.objects.get(key="free").state == "published"
    assert set(OutboxEvent.objects.filter(key="stuck").values_list("state", flat=True)) == {"failed", "pending"}


@pytest.mark.django_db
def test_purge_deletes_old_published_rows_keeps_audit_events_longer_and_never_touches_unpublished(settings):
    settings.OUTBOX_RETENTION_DAYS = 7
    settings.OUTBOX_AUDIT_RETENTION_DAYS = 365
    now = timezone.now()

    def row(event_type: str, state: str, published_days_ago: int | None) -> OutboxEvent:
        published_at = None if published_days_ago is None else now - timedelta(days=published_days_ago)
        return OutboxEvent.objects.create(
            event_type=event_type,
            topic="t",
            message_type="m",
            key="k",
            value="{}",
            state=state,
            created_at=now - timedelta(days=1000),
            published_at=published_at,
        )

    old_lifecycle = row("LotteryClosed", "published", 8)
    recent_lifecycle = row("LotteryClosed", "published", 6)
    old_award = row("AwardCreated", "published", 8)
    ancient_award = row("AwardCreated", "published", 400)
    ancient_draw = row("LotteryDrawn", "published", 400)
    stuck = row("LotteryClosed", "pending", None)
    parked = row("AwardCreated", "failed", None)

    deleted = purge_published(now=now, batch_size=2)

    assert deleted == 3
    remaining = set(OutboxEvent.objects.values_list("pk", flat=True))
    assert remaining == {recent_lifecycle.pk, old_award.pk, stuck.pk, parked.pk}
    assert old_lifecycle.pk not in remaining and ancient_award.pk not in remaining and ancient_draw.pk not in remaining
    assert purge_published(now=now) == 0  # safe to run again


@pytest.mark.django_db
def test_kicks_coalesce_into_at_most_one_queued_relay_run(django_capture_on_commit_callbacks):
    redis = redis_client()
    queue = celery_app.conf.task_default_queue
    redis.delete(RELAY_PENDING_KEY, queue)

    for n in range(50):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            publish(closed_event(f"kick-{n}"))

    assert redis.llen(queue) == 1
    assert redis.exists(RELAY_PENDING_KEY)


@pytest.mark.django_db(transaction=True)
def test_a_drained_relay_run_lets_the_next_commit_queue_a_new_run(kafka_broker):
    redis = redis_client()
    queue = celery_app.conf.task_default_queue
    redis.delete(RELAY_PENDING_KEY, queue)
    with transaction.atomic():
        publish(closed_event("rearm-1"))
    assert redis.llen(queue) == 1  # the first kick queued a run

    relay_outbox()  # the run (here in-process) drains, then clears the flag
    redis.delete(queue)

    assert OutboxEvent.objects.get(key="rearm-1").state == "published"
    assert not redis.exists(RELAY_PENDING_KEY)
    with transaction.atomic():
        publish(closed_event("rearm-2"))
    assert redis.llen(queue) == 1


@pytest.mark.django_db(transaction=True)
def test_the_active_trace_travels_in_the_traceparent_header_to_kafka(kafka_broker):
    provider = TracerProvider()
    tracer = provider.get_tracer("tests")

    with tracer.start_as_current_span("request") as span:
        with transaction.atomic():
            publish(closed_event("traced"))  # one event: one INSERT
        with transaction.atomic():
            publish(*(closed_event(f"traced-batch-{i}") for i in range(25)))  # a batch: COPY
    with transaction.atomic():
        publish(closed_event("untraced"))

    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    traced = OutboxEvent.objects.filter(key__startswith="traced")
    assert traced.count() == 26
    assert {json.dumps(event.headers) for event in traced} == {json.dumps({"traceparent": expected})}
    assert OutboxEvent.objects.get(key="untraced").headers == {}
    assert not trace.get_current_span().get_span_context().is_valid

    drain(budget_seconds=10)
    keys = {"traced", "traced-batch-24", "untraced"}
    messages = {m.key: m for m in read_messages(kafka_broker.bootstrap, [LIFECYCLE_TOPIC], keys=keys, expect=3)}
    assert messages["traced"].headers["traceparent"] == expected
    assert messages["traced-batch-24"].headers["traceparent"] == expected
    assert "traceparent" not in messages["untraced"].headers


def test_a_forked_process_builds_its_own_producer(kafka_broker):
    parent = kafka.producer()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got the parent's producer, then leave at once
        os.close(read_end)
        child = kafka.producer()
        os.write(write_end, b"same" if child is parent else b"own")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 16)
    os.waitpid(pid, 0)

    assert answer == b"own"
    assert kafka.producer() is parent
