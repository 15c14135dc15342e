"""The operations page: who may open it, what it shows, and the consumer lag as Kafka tells it."""

import json
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from analytics.lag import consumer_lag
from analytics.services import metrics_refresh
from outbox.kafka import ensure_topics
from outbox.models import DeadLetter
from tests.analytics.flow import short_flow

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_stakes_topic(settings, kafka_broker):
    """A stakes topic and group of this test's own: offsets and messages of other tests never count here."""
    suffix = uuid.uuid4().hex[:8]
    settings.STAKES_TOPIC = f"player.v1.staked.lag-{suffix}"
    settings.STAKES_DLQ_TOPIC = f"{settings.STAKES_TOPIC}.dlq"
    settings.STAKES_CONSUMER_GROUP = f"lag-group-{suffix}"
    ensure_topics([settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])
    return settings.STAKES_TOPIC


def test_the_lag_is_what_the_group_has_not_committed_of_each_partition(own_stakes_topic):
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
    # A batch each: Tansu answers ListOffsets(latest) with its last batch's first offset + 1 (docs/business-metrics.md).
    for n in range(5):
        producer.send(own_stakes_topic, value=json.dumps({"n": n}).encode(), partition=0)
        producer.flush()
    producer.send(own_stakes_topic, value=b"{}", partition=1)
    producer.flush()
    producer.close()

    before = consumer_lag()  # nothing committed yet: every message is behind

    committer = KafkaConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=settings.STAKES_CONSUMER_GROUP,
        enable_auto_commit=False,
    )
    committer.commit({TopicPartition(own_stakes_topic, 0): OffsetAndMetadata(3, "", -1)})
    committer.close()
    after = consumer_lag()

    assert (before.error, before.total, before.partitions[0], before.partitions[1]) == ("", 6, 5, 1)
    assert (after.total, after.partitions[0], after.partitions[1]) == (3, 2, 1)


def test_the_lag_says_why_when_kafka_cannot_answer(settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = ["127.0.0.1:9"]  # nothing listens there

    lag = consumer_lag()

    assert lag.total is None
    assert lag.error.startswith("Kafka ")


def test_the_page_is_for_staff_with_the_permission(client, make_player):
    url = reverse("operations")
    assert client.get(url).status_code == 302  # to admin's login

    client.force_login(make_player(roles=["support"]))
    assert client.get(url).status_code == 403

    client.force_login(make_player(roles=["operations"]))
    assert client.get(url).status_code == 200


def test_admin_links_the_page_for_those_who_may_open_it(client, make_player):
    client.force_login(make_player(roles=["compliance"]))
    assert reverse("operations") in client.get(reverse("admin:index")).content.decode()

    client.force_login(make_player(roles=["support"]))
    assert reverse("operations") not in client.get(reverse("admin:index")).content.decode()


def test_the_page_shows_today_at_a_glance(own_stakes_topic, settings, client, make_player, make_lottery, enter):
    flow = short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    soon = make_lottery(closes_at=timezone.now() + timedelta(minutes=5))
    enter(soon, make_player())
    metrics_refresh()
    client.force_login(make_player(roles=["operations"]))

    page = client.get(reverse("operations"))

    html = page.content.decode()
    closes = [item.lottery.pk for item in page.context["overview"].next_closes]
    assert closes[0] == soon.pk and flow.drop.pk not in closes
    assert f"{soon.title}</a>" in html
    assert page.context["overview"].dead_letters_open == 1
    assert page.context["overview"].sms_failed_24h == 1
    assert page.context["overview"].lag.error == "" and page.context["overview"].lag.total == 0
    assert 'id="ops-reconciliation-status">every hour adds up' in html
    series = json.loads(html.split('<script id="hourly-series" type="application/json">')[1].split("</script>")[0])
    assert sum(series["ballots_accepted"]) == 8 and sum(series["fraud_rejections"]) == 1
    assert {currency: sum(values) for currency, values in series["staked_revenue"].items()} == {"EUR": 30, "GBP": 7.5}
    assert len(series["hours"]) == 48


def test_the_page_flags_a_failing_hour(own_stakes_topic, settings, client, make_player, make_lottery, enter):
    short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    DeadLetter.objects.all().delete()
    client.force_login(make_player(roles=["operations"]))

    html = client.get(reverse("operations")).content.decode()

    assert "1 hour(s) failing" in html
    assert html.count('class="ops-failing-hour"') == 1
    assert "dead_letters: dead-lettered 1 != dead letters 0" in html
