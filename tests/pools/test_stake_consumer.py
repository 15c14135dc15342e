"""Stakes from Kafka into pools: exactly once in effect, dead letters, pool draws and awards."""

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from kafka import KafkaConsumer, KafkaProducer

from draws.models import Draw, LotteryAward
from draws.services import draw_verify
from entries.models import Player
from entries.services import player_ban
from lotteries.models import Lottery
from lottery_site.celery import app as celery_app
from outbox.inbox import counters_total
from outbox.kafka import ensure_topics
from outbox.models import DeadLetter, InboxMessage
from outbox.relay import drain
from pools.consumer import handle_batch
from pools.models import Stake
from tests.concurrency import log_lines, manage_py, wait_for
from tests.kafka import free_port, read_messages
from tests.metrics import Samples, total, value, wait_for_scrape

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("kafka_broker")]


def stake(
    *, player: str, game: str, amount: str = "5.00", currency: str = "EUR", stake_id: str | None = None
) -> dict[str, Any]:
    return {
        "stakeId": stake_id or str(uuid.uuid4()),
        "playerId": player,
        "gameId": game,
        "amount": amount,
        "currency": currency,
        "occurredAt": datetime.now(UTC).isoformat(),
    }


def produce(messages: list[bytes | dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
    for message in messages:
        value = json.dumps(message).encode() if isinstance(message, dict) else message
        producer.send(settings.STAKES_TOPIC, value=value, headers=[("messageType", b"player.stakeCreated")])
    producer.flush()
    producer.close()


def stop(process) -> Any:
    returncode, out, err = process.stop()
    assert returncode == 0, err
    return out


@pytest.fixture(autouse=True)
def stakes_topic(settings):
    """Topics of this test's own: offsets committed by another test's consumer never apply here."""
    suffix = uuid.uuid4().hex[:8]
    settings.STAKES_TOPIC = f"player.v1.staked.test-{suffix}"
    settings.STAKES_DLQ_TOPIC = f"{settings.STAKES_TOPIC}.dlq"
    ensure_topics([settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])
    return {"STAKES_TOPIC": settings.STAKES_TOPIC, "STAKES_DLQ_TOPIC": settings.STAKES_DLQ_TOPIC}


@pytest.fixture
def consumer_process(stakes_topic):
    process = manage_py("consume_stakes", env=stakes_topic)
    yield process
    stop(process)


def test_three_players_fill_a_pool_that_is_drawn_once_and_its_award_goes_out(kafka_broker, consumer_process):
    game = f"game-{uuid.uuid4().hex[:8]}"
    produce([stake(player="p1", game=game, amount="10.00"), stake(player="p2", game=game, amount="5.50"),
             stake(player="p3", game=game, amount="2.25")])  # fmt: skip

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        wait_for(lambda: Lottery.objects.filter(game_id=game, state="drawn").exists(), what="the pool's draw")
    drain(budget_seconds=10)

    pool = Lottery.objects.get(game_id=game)
    assert (pool.kind, pool.currency, pool.pool_size, pool.pot) == ("pool", "EUR", 3, Decimal("17.75"))
    assert [t.to_state for t in pool.transitions.order_by("id")] == ["open", "closed", "drawn"]
    assert set(pool.transitions.exclude(to_state="open").values_list("source", flat=True)) == {"pool_fill"}
    award = LotteryAward.objects.get(lottery=pool)
    assert (award.win_sum, award.currency) == (Decimal("15.97"), "EUR")  # 17.75 x 0.9 = 15.975, rounded down
    assert award.player.username in {"ext-p1", "ext-p2", "ext-p3"}
    assert draw_verify(draw=Draw.objects.get(lottery=pool)).matches
    messages = read_messages(kafka_broker.bootstrap, ["lottery.v1.award"], keys={str(pool.pk)}, expect=1)
    assert len(messages) == 1
    data = messages[0].value["data"]
    assert (data["win_sum"], data["currency"], data["status"]) == ("15.97", "EUR", "played_out")
    assert data["player_external_id"] == award.player.external_account_id
    # The next stake for the game opens a new pool.
    produce([stake(player="p4", game=game)])
    wait_for(lambda: Lottery.objects.filter(game_id=game, state="open").exists(), what="a new pool")
    assert counters_total(consumer="stakes")["applied"] == 4


def test_a_stake_sent_three_times_and_a_consumer_killed_before_its_offset_commit_enter_once(stakes_topic):
    game = f"game-{uuid.uuid4().hex[:8]}"
    same = stake(player="twice", game=game, stake_id="stake-sent-three-times")
    produce([same, same, same])

    # A consumer applies the batch, commits the database, and dies before committing its offsets.
    first = KafkaConsumer(
        settings.STAKES_TOPIC,
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=settings.STAKES_CONSUMER_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + 30
    while len([r for r in records if json.loads(r.value).get("gameId") == game]) < 3 and time.monotonic() < deadline:
        records += [r for batch in first.poll(timeout_ms=500).values() for r in batch]
    handle_batch(records)
    first.close(autocommit=False)

    # A new consumer gets everything again.
    replacement = manage_py("consume_stakes", env=stakes_topic)
    try:
        wait_for(lambda: counters_total(consumer="stakes")["received"] >= 2 * len(records), what="the redelivery")
    finally:
        stop(replacement)

    assert Stake.objects.filter(stake_id="stake-sent-three-times").count() == 1
    assert Lottery.objects.get(game_id=game).ballots.count() == 1
    totals = counters_total(consumer="stakes")
    assert totals["received"] == totals["applied"] + totals["duplicate"] + totals["dead_lettered"]
    assert totals["applied"] == len({json.loads(r.value)["stakeId"] for r in records if r.value.startswith(b"{")})


def test_a_banned_players_stake_is_dead_lettered_with_the_reason(kafka_broker, consumer_process):
    banned = Player.objects.create_user(username="ext-cheat", external_account_id="cheat")
    player_ban(player_id=banned.pk, reason="fraud", actor=None)
    game = f"game-{uuid.uuid4().hex[:8]}"

    produce([stake(player="cheat", game=game)])
    wait_for(lambda: DeadLetter.objects.filter(reason="player_banned").exists(), what="the dead letter")

    letter = DeadLetter.objects.get(reason="player_banned")
    assert json.loads(bytes(letter.value))["playerId"] == "cheat"
    assert not Stake.objects.filter(player=banned).exists()
    dlq = read_messages(kafka_broker.bootstrap, [settings.STAKES_DLQ_TOPIC], expect=1)
    assert [m.headers["error"] for m in dlq if m.value.get("gameId") == game] == ["player_banned"]
    totals = counters_total(consumer="stakes")
    assert (totals["received"], totals["dead_lettered"], totals["applied"]) == (1, 1, 0)


def test_the_consumers_lines_name_the_topic_partition_offset_and_stake_they_are_about(kafka_broker, stakes_topic):
    banned = Player.objects.create_user(username="ext-banned", external_account_id="banned")
    player_ban(player_id=banned.pk, reason="fraud", actor=None)
    game = f"game-{uuid.uuid4().hex[:8]}"
    fine, cheat = stake(player="fine", game=game), stake(player="banned", game=game)
    bad_amount = {**stake(player="fine", game=game), "amount": "abc"}
    produce([fine, b"not json", cheat, bad_amount])

    consumer = manage_py("consume_stakes", env={**stakes_topic, "LOG_LEVEL": "DEBUG"})
    try:
        wait_for(lambda: counters_total(consumer="stakes")["received"] >= 4, what="the four messages")
        consumer.wait_for_log("stake batch")
    finally:
        code, _, err = consumer.stop()
    assert code == 0, err

    log = log_lines(err)  # every line is one JSON object (kafka-python's DEBUG lines too)
    started = next(i for i, line in enumerate(log) if line["event"] == "consumer started")
    assert {line["service"] for line in log[started:]} == {"consumer"}
    topic = settings.STAKES_TOPIC
    applied = next(line for line in log if line["event"] == "stake applied")
    assert (applied["topic"], applied["stake_id"], applied["player_id"]) == (
        topic,
        fine["stakeId"],
        applied["player_id"],
    )
    assert isinstance(applied["partition"], int) and isinstance(applied["offset"], int)
    letters = {line["reason"]: line for line in log if line["event"] == "stake dead-lettered"}
    assert set(letters) == {"invalid_json", "player_banned", "invalid_amount"}
    assert letters["player_banned"]["stake_id"] == cheat["stakeId"]
    assert letters["invalid_amount"]["stake_id"] == bad_amount["stakeId"]  # refused, yet its id was readable
    assert letters["invalid_json"]["stake_id"] is None  # unreadable: its partition and offset say which it was
    assert {(line["topic"], line["level"]) for line in letters.values()} == {(topic, "warning")}
    batches = [line for line in log if line["event"] == "stake batch"]
    assert {line["topic"] for line in batches} == {topic}  # the consumer's bound context
    assert sum(line["received"] for line in batches) == 4
    assert (sum(line["applied"] for line in batches), sum(line["dead_lettered"] for line in batches)) == (1, 3)
    offsets = {int(p): span for line in batches for p, span in line["offsets"].items()}
    assert applied["offset"] in range(offsets[applied["partition"]][0], offsets[applied["partition"]][1] + 1)


def test_a_thousand_stakes_with_duplicates_and_malformed_ones_balance_and_every_full_pool_is_drawn_once(
    kafka_broker, consumer_process
):
    games = [f"bulk-{n}-{uuid.uuid4().hex[:6]}" for n in range(50)]
    valid = [stake(player=f"bulk-player-{g}-{i}", game=g) for g in games for i in range(18)]  # 6 full pools a game
    duplicates = valid[::18]  # 50 resent stakes, same stakeId
    malformed: list[bytes | dict[str, Any]] = [
        *[b"not json at all" for _ in range(10)],
        *[{k: v for k, v in stake(player="x", game=games[0]).items() if k != "amount"} for _ in range(10)],
        *[stake(player="x", game=games[0], amount="-5.00") for _ in range(10)],
        *[stake(player="x", game=games[0], amount="five") for _ in range(10)],
        *[stake(player="x", game=games[0], currency="XXX") for _ in range(10)],
    ]
    messages: list[bytes | dict[str, Any]] = [*valid, *duplicates, *malformed]
    assert len(messages) == 1000
    produce(messages)

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        wait_for(lambda: counters_total(consumer="stakes")["received"] >= 1000, timeout=120, what="1,000 received")
        wait_for(lambda: Draw.objects.filter(lottery__game_id__in=games).count() >= 300, timeout=120, what="300 draws")

    totals = counters_total(consumer="stakes")
    assert (totals["received"], totals["applied"], totals["duplicate"], totals["dead_lettered"]) == (1000, 900, 50, 50)
    pools = Lottery.objects.filter(game_id__in=games)
    assert pools.filter(state="drawn").count() == 300
    assert Draw.objects.filter(lottery__in=pools).count() == 300
    assert LotteryAward.objects.filter(lottery__in=pools).count() == 300
    assert Stake.objects.filter(game_id__in=games).count() == 900
    reasons = dict.fromkeys(["invalid_json", "missing_field", "invalid_amount", "unknown_currency"], 0)
    for reason in DeadLetter.objects.values_list("reason", flat=True):
        reasons[reason] += 1
    assert reasons == {"invalid_json": 10, "missing_field": 10, "invalid_amount": 20, "unknown_currency": 10}
    dlq = read_messages(kafka_broker.bootstrap, [settings.STAKES_DLQ_TOPIC], expect=50)
    assert len(dlq) == 50
    assert {(m.headers["original-partition"], m.headers["original-offset"]) for m in dlq} == {
        (str(d.partition), str(d.offset)) for d in DeadLetter.objects.all()
    }


class _Crash(BaseException):
    """The process dying: not an error the consumer may catch."""


def test_a_crash_between_the_database_commit_and_the_offset_commit_has_no_double_effect(settings, monkeypatch):
    from pools import consumer as stake_consumer

    settings.STAKES_CONSUMER_GROUP = f"crash-{uuid.uuid4().hex[:8]}"
    good = [stake(player=f"crash-{n}", game="crash-game") for n in range(3)]
    produce([*good, b"{not json"])
    committed = []

    def crash_before_the_offset_commit(self, offsets=None):
        committed.append(offsets)
        raise _Crash

    # when the consumer applies the batch, commits the database, then dies before committing offsets
    with monkeypatch.context() as patch:
        patch.setattr(KafkaConsumer, "commit", crash_before_the_offset_commit)
        with pytest.raises(_Crash):
            stake_consumer.consume(should_stop=lambda: False)
    assert committed, "the crash was not reached"
    assert Stake.objects.filter(stake_id__in=[s["stakeId"] for s in good]).count() == 3

    # then a new consumer of the group gets the batch again, and its effect stays single
    batches: list[Any] = []
    stake_consumer.consume(should_stop=lambda: bool(batches), on_batch=batches.append)

    assert batches[0].total("received") == 4 and batches[0].total("duplicate") == 4
    assert Stake.objects.filter(stake_id__in=[s["stakeId"] for s in good]).count() == 3
    assert DeadLetter.objects.filter(topic=settings.STAKES_TOPIC).count() == 1
    dead_letter_topic = read_messages(settings.KAFKA_BOOTSTRAP_SERVERS[0], [settings.STAKES_DLQ_TOPIC], expect=1)
    assert len(dead_letter_topic) == 1  # produced once
    totals = counters_total(consumer="stakes")
    assert (totals["received"], totals["applied"], totals["duplicate"], totals["dead_lettered"]) == (8, 3, 4, 1)


def test_a_stakes_topic_recreated_with_more_partitions_is_consumed_whole(stakes_topic):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    # given a running consumer (metadata refreshed every 2 s here; 10 s by default)
    consumer = manage_py("consume_stakes", env={**stakes_topic, "KAFKA_METADATA_MAX_AGE_MS": "2000"})
    try:
        produce([stake(player="before", game="recreated")])
        wait_for(lambda: Stake.objects.count() == 1, what="the first stake")

        # when the topic is deleted and comes back with twice the partitions
        admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
        try:
            admin.delete_topics([settings.STAKES_TOPIC])
            wait_for(lambda: settings.STAKES_TOPIC not in admin.list_topics(), what="the topic's deletion")
            admin.create_topics([NewTopic(settings.STAKES_TOPIC, num_partitions=6, replication_factor=1)])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
        for n in range(24):  # four stakes in every partition, the new ones too
            body = json.dumps(stake(player=f"after-{n}", game="recreated")).encode()
            producer.send(settings.STAKES_TOPIC, value=body, partition=n % 6,
                          headers=[("messageType", b"player.stakeCreated")])  # fmt: skip
        producer.flush()
        producer.close()

        # then every stake is applied within three times the documented delay (metadata age plus a rebalance)
        wait_for(lambda: Stake.objects.count() == 25, timeout=3 * (2 + 10), what="the stakes in every partition")
    finally:
        stop(consumer)
    totals = counters_total(consumer="stakes")
    # The recreated topic is read again from its start: what was seen already is a duplicate, nothing twice applied.
    assert totals["applied"] == 25
    assert totals["received"] == totals["applied"] + totals["duplicate"]


def lag(samples: Samples, name: str) -> list[float]:
    return [v for (n, labels), v in samples.items() if n == name and ("topic", settings.STAKES_TOPIC) in labels]


def test_the_consumer_shows_its_stakes_and_its_lag_per_partition_on_its_own_port(kafka_broker, stakes_topic):
    port = free_port()
    consumer = manage_py("consume_stakes", env={**stakes_topic, "STAKES_CONSUMER_METRICS_PORT": str(port)})
    game = f"game-{uuid.uuid4().hex[:8]}"
    db = settings.DATABASES["default"]
    try:
        produce([stake(player="lag-1", game=game), stake(player="lag-2", game=game), b"not json"])
        caught_up = wait_for_scrape(
            port,
            lambda s: (
                total(s, "lottery_stakes_total") == 3
                and len(lag(s, "lottery_consumer_lag_messages")) == settings.KAFKA_TOPIC_PARTITIONS
                and sum(lag(s, "lottery_consumer_lag_messages")) == 0
            ),
            what="three stakes taken, and no lag on any partition",
        )
        # The consumer stalls: its next batch waits for the inbox, which another transaction holds.
        with psycopg.connect(f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}") as locker:
            locker.execute(f"LOCK TABLE {InboxMessage._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            produce([stake(player="lag-3", game=game), stake(player="lag-4", game=game)])
            stalled = wait_for_scrape(
                port,
                lambda s: (
                    sum(lag(s, "lottery_consumer_lag_messages")) == 2
                    and max(lag(s, "lottery_consumer_lag_seconds")) >= 1
                ),
                what="a lag of two stakes, waiting for a second",
            )
        recovered = wait_for_scrape(
            port,
            lambda s: sum(lag(s, "lottery_consumer_lag_messages")) == 0 and total(s, "lottery_stakes_total") == 5,
            what="the stalled batch committed",
        )
    finally:
        stop(consumer)

    assert value(caught_up, "lottery_stakes_total", outcome="applied") == 2
    assert value(caught_up, "lottery_stakes_total", outcome="dead_lettered") == 1
    assert set(lag(caught_up, "lottery_consumer_lag_seconds")) == {0.0}
    assert min(lag(stalled, "lottery_consumer_lag_seconds")) == 0.0  # the partitions that got nothing new
    assert set(lag(recovered, "lottery_consumer_lag_seconds")) == {0.0}
    assert value(recovered, "lottery_stakes_total", outcome="applied") == 4
    assert (value(recovered, "lottery_consumer_batch_duration_seconds_count", consumer="stakes") or 0) >= 2
