"""The stake consumer: player.v1.staked in, pools filled, every message accounted for.

A poll's records are handled as one batch, in one database transaction:

1. each record is parsed (``pools.stake_messages``); a bad one is refused;
2. the stakes' ids are claimed in the inbox: an id seen before is a duplicate;
3. the players are found, or created on first sight (``entries.services.players_for_stakes``);
   a banned player's stake is refused;
4. the new stakes enter their pools, set-wise (``pools.services.pools_enter``), whose
   fills queue their draws after the commit;
5. refusals become dead letters, produced to the dead-letter topic (acknowledged
   before the commit: a dead letter in the database was delivered too);
6. the per-partition counters move by the batch's tallies.

Only after the commit are the offsets committed: a crash in between redelivers
the batch, and the inbox and dead-letter keys make the second pass change nothing.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from core import tracing
from core.resilience import Outage, drop_database_connection
from entries.services import players_for_stakes
from outbox import kafka
from outbox.inbox import Refusal, Tally, counters_add, dead_letters_store, inbox_claim
from outbox.models import DeadLetter, InboxMessage
from outbox.pipeline import CONSUMER as CONSUMER_PROCESS
from outbox.pipeline import heartbeat
from outbox.relay import Backoff
from pools import metrics
from pools.services import pools_enter
from pools.stake_messages import StakeMessage, StakeRefused, parse_stake

logger = logging.getLogger(__name__)

CONSUMER = metrics.CONSUMER
# Players created from stakes never log in here: an unusable password (no per-player hashing).


@dataclass(frozen=True)
class Record:
    """What the handler needs of a Kafka record (kafka-python's ConsumerRecord has these too)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass
class StakeBatch:
    """What one poll's batch of stakes came to, per partition: received, applied, duplicate, dead-lettered."""

    tallies: dict[int, Tally] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.tallies.values())


def handle_batch(records: Sequence[Any]) -> StakeBatch:
    """Apply one poll's records exactly once in effect. Raises (and rolls back) if the DLQ is unreachable."""
    if not tracing.enabled():
        return _handle_batch(records, None)
    traces = _BatchTraces(records)
    try:
        with tracing.attached(traces.batch_context):
            result = _handle_batch(records, traces)
    except BaseException as error:
        traces.failed(error)
        raise
    finally:
        traces.end()
    return result


class _BatchTraces:
    """With tracing on: the batch's span, and a span per message in the trace its ``traceparent`` header names.

    The batch span starts a trace of its own (a batch mixes many) and links
    to every message's trace; each message's span (``<topic> process``) is a
    child of its header's context, so the stake's trace goes on through its
    pool's fill, the draw and the award. Both end when the batch is done.
    """

    def __init__(self, records: Sequence[Any]) -> None:
        parents = [tracing.context_from_headers(record.headers) for record in records]
        topic = records[0].topic if records else settings.STAKES_TOPIC
        self.batch = tracing.start_span(
            f"{topic} batch",
            {
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.batch.message_count": len(records),
            },
            kind=SpanKind.CONSUMER,
            context=tracing.new_trace(),
            links=tracing.links(parents[: tracing.MAX_LINKS]),
        )
        self.batch_context = tracing.context_of(self.batch)
        batch_link = tracing.link(self.batch_context)
        self.spans: dict[tuple[int, int], Span] = {}
        for record, parent in zip(records, parents, strict=True):
            self.spans[(record.partition, record.offset)] = tracing.start_span(
                f"{record.topic} process",
                {
                    "messaging.system": "kafka",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
                kind=SpanKind.CONSUMER,
                context=parent or self.batch_context,
                links=batch_link if parent is not None else (),
            )

    def stake(self, record: Any, stake: StakeMessage) -> StakeMessage:
        """The stake, its trace now its message's span (the pool it fills continues or links to it)."""
        span = self.spans[(record.partition, record.offset)]
        span.set_attribute(tracing.STAKE_ID, stake.stake_id)
        return replace(stake, traceparent=tracing.traceparent(tracing.context_of(span)) or stake.traceparent)

    def context(self, partition: int, offset: int) -> Context:
        return tracing.context_of(self.spans[(partition, offset)])

    def failed(self, error: BaseException) -> None:
        for span in (self.batch, *self.spans.values()):
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, type(error).__name__)

    def end(self) -> None:
        for span in self.spans.values():
            span.end()
        self.batch.end()


def _handle_batch(records: Sequence[Any], traces: _BatchTraces | None) -> StakeBatch:
    tallies: dict[int, Tally] = defaultdict(Tally)
    refusals: list[Refusal] = []
    parsed: list[tuple[Any, StakeMessage]] = []
    stake_ids: dict[tuple[int, int], str] = {}  # by partition and offset: the ids the dead letters' lines name
    for record in records:
        tallies[record.partition].received += 1
        try:
            stake = parse_stake(record.value, _headers(record))
        except StakeRefused as refused:
            refusals.append(_refusal(record, refused.reason, refused.message))
            if refused.stake_id is not None:
                stake_ids[(record.partition, record.offset)] = refused.stake_id
            continue
        parsed.append((record, stake if traces is None else traces.stake(record, stake)))

    # One moment for the whole batch: its inbox rows, stakes, dead letters and hourly counters
    # carry it, so each hour's counts can be checked against those rows (analytics).
    now = timezone.now()
    with transaction.atomic():
        fresh = inbox_claim(consumer=CONSUMER, message_ids=[stake.stake_id for _, stake in parsed], at=now)
        first: list[tuple[Any, StakeMessage]] = []
        for record, stake in parsed:
            if stake.stake_id in fresh:
                fresh.discard(stake.stake_id)  # a second copy in the same batch is a duplicate
                first.append((record, stake))
            else:
                tallies[record.partition].duplicate += 1
                _log_stake("stake duplicate", record, stake)

        players = players_for_stakes(external_ids={stake.player_external_id for _, stake in first})
        entering: list[StakeMessage] = []
        for record, stake in first:
            player = players[stake.player_external_id]
            if player.is_banned:
                refusals.append(_refusal(record, "player_banned", f"player {stake.player_external_id} is banned"))
                continue
            entering.append(replace(stake, player_id=player.pk))
            tallies[record.partition].applied += 1
            _log_stake("stake applied", record, stake, player_id=player.pk)
        # A banned player's stake must not stay claimed: a replay after the unban applies it.
        _inbox_release([r for r in refusals if r.reason == "player_banned"], parsed)
        pools_enter(stakes=entering, now=now)

        new_refusals = dead_letters_store(consumer=CONSUMER, refusals=refusals, at=now)
        stake_ids.update({(record.partition, record.offset): stake.stake_id for record, stake in parsed})
        for refusal in refusals:
            if refusal in new_refusals:
                tallies[refusal.partition].dead_lettered += 1
            else:
                tallies[refusal.partition].duplicate += 1  # redelivered: already a dead letter
        _produce_dead_letters(new_refusals, stake_ids, traces)
        counters_add(consumer=CONSUMER, topic=settings.STAKES_TOPIC, tallies=tallies, at=now)
        transaction.on_commit(lambda: metrics.stakes_counted(tallies))
    return StakeBatch(tallies=dict(tallies))


def _log_stake(event: str, record: Any, stake: StakeMessage, **fields: Any) -> None:
    """One stake's DEBUG line: where it came from and which stake it is."""
    if logger.isEnabledFor(logging.DEBUG):
        fields.update(topic=record.topic, partition=record.partition, offset=record.offset, stake_id=stake.stake_id)
        logger.debug(event, extra=fields)


def _headers(record: Any) -> dict[str, bytes | None]:
    return {name: value for name, value in (record.headers or [])}


def _refusal(record: Any, reason: str, error: str) -> Refusal:
    # Stored as JSON text: undecodable bytes are replaced, NUL (which jsonb refuses) dropped.
    headers = {
        name.replace("\x00", ""): (value or b"").decode("utf-8", errors="replace").replace("\x00", "")
        for name, value in _headers(record).items()
    }
    return Refusal(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=headers,
        reason=reason,
        error=error,
    )


def _inbox_release(banned: list[Refusal], parsed: list[tuple[Any, StakeMessage]]) -> None:
    if not banned:
        return
    coordinates = {(r.partition, r.offset) for r in banned}
    ids = [stake.stake_id for record, stake in parsed if (record.partition, record.offset) in coordinates]
    InboxMessage.objects.filter(consumer=CONSUMER, message_id__in=ids).delete()


def _produce_dead_letters(
    refusals: list[Refusal], stake_ids: dict[tuple[int, int], str], traces: "_BatchTraces | None" = None
) -> None:
    """Send refusals to the dead-letter topic and wait for the acknowledgements (before the commit).

    Each is logged, with the stake's id when the message had a readable one (``stake_ids`` by partition and offset).
    Traced, each is sent in its message's trace, and its send writes the traceparent (not a second one).
    """
    if not refusals:
        return
    producer = kafka.producer()
    futures = []
    for r in refusals:
        kept = tracing.without_trace_headers(r.headers) if traces is not None else r.headers
        headers = [(name, value.encode()) for name, value in kept.items()]
        headers += [
            ("error", r.reason.encode()),
            ("error-message", r.error.encode()[:1000]),
            ("original-topic", r.topic.encode()),
            ("original-partition", str(r.partition).encode()),
            ("original-offset", str(r.offset).encode()),
            ("dead-lettered-at", timezone.now().isoformat().encode()),
        ]
        with tracing.attached(traces.context(r.partition, r.offset) if traces is not None else None):
            futures.append(producer.send(settings.STAKES_DLQ_TOPIC, key=r.key, value=r.value, headers=headers))
    producer.flush(timeout=settings.KAFKA_REQUEST_TIMEOUT_MS * 2 / 1000)
    for future in futures:
        future.get(timeout=0)  # raises if the broker did not take it: the transaction rolls back
    for r in refusals:
        logger.warning(
            "stake dead-lettered",
            extra={
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "stake_id": stake_ids.get((r.partition, r.offset)),
                "reason": r.reason,
                "error": r.error,
                "dlq_topic": settings.STAKES_DLQ_TOPIC,
            },
        )


def consume(*, should_stop: Any, on_batch: Any = None) -> None:
    """Join the consumer group and handle batches until ``should_stop()``; commits offsets after each batch.

    A batch that fails (database or broker trouble) is rolled back; the
    consumer seeks back to its first records and retries after a backoff, so
    nothing is skipped. A rebalance between the database commit and the
    offset commit redelivers the batch to the partition's next owner, whose
    inbox finds it already applied.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id=f"{settings.KAFKA_CLIENT_ID}-stakes",
        group_id=settings.STAKES_CONSUMER_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.KAFKA_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=settings.KAFKA_HEARTBEAT_INTERVAL_MS,
        max_poll_records=settings.STAKES_MAX_POLL_RECORDS,
        fetch_max_wait_ms=100,
        metadata_max_age_ms=settings.KAFKA_METADATA_MAX_AGE_MS,
        allow_auto_create_topics=False,  # a deleted topic comes back from ensure_topics, with our partition count
        request_timeout_ms=max(settings.KAFKA_REQUEST_TIMEOUT_MS, settings.KAFKA_SESSION_TIMEOUT_MS + 1000),
    )
    loop = _ConsumerLoop(consumer, should_stop)
    metrics.lag.register()
    # Every line of the loop, and of the services it calls, says which topic and group it consumes.
    with structlog.contextvars.bound_contextvars(topic=settings.STAKES_TOPIC, group=settings.STAKES_CONSUMER_GROUP):
        try:
            while not should_stop():
                heartbeat(CONSUMER_PROCESS)
                if not loop.topics_ready():
                    continue
                loop.subscription.check()
                polled = consumer.poll(timeout_ms=500)
                metrics.lag.fetched(consumer, polled)
                if not any(polled.values()):
                    close_old_connections()
                    continue
                result = loop.handle(polled)
                if result is not None and on_batch is not None:
                    on_batch(result)
        finally:
            consumer.close(autocommit=False)


class _ConsumerLoop:
    """One consumer's turn: its topics, its subscription, a batch with its offsets, and outages with backoff."""

    def __init__(self, consumer: KafkaConsumer, should_stop: Any) -> None:
        self.consumer, self.should_stop = consumer, should_stop
        self.backoff = Backoff()
        self.outages = {"database": Outage(logger, "PostgreSQL"), "kafka": Outage(logger, "Kafka")}
        self.topics = kafka.TopicGuard(lambda: [settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])
        self.subscription = _StakesSubscription(consumer)

    def topics_ready(self) -> bool:
        """Check the topics (at start, after broker trouble, and now and then); False after a backoff."""
        try:
            self.topics.ensure()
        except KafkaError as error:
            self._back_off(error, self.outages["kafka"])
            return False
        return True

    def handle(self, polled: dict[Any, list[Any]]) -> StakeBatch | None:
        """Apply the batch, then commit its offsets; on trouble seek back, back off and return ``None``."""
        began = time.monotonic()
        try:
            result = handle_batch([record for partition_records in polled.values() for record in partition_records])
        except (DatabaseError, KafkaError) as error:
            if isinstance(error, KafkaError):
                kafka.recover_producer(error)
                self.topics.stale()
            else:
                drop_database_connection()  # a restarted server left it dead
            for tp, partition_records in polled.items():
                self.consumer.seek(tp, partition_records[0].offset)
            self._back_off(error, self.outages["kafka" if isinstance(error, KafkaError) else "database"])
            return None
        metrics.batch_duration.labels(CONSUMER).observe(time.monotonic() - began)
        self.backoff.reset()
        for outage in self.outages.values():
            outage.recovered()
        self._commit_offsets(polled)
        logger.info(
            "stake batch",
            extra={
                # Each partition's first and last offset in the batch.
                "offsets": {tp.partition: [records[0].offset, records[-1].offset] for tp, records in polled.items()},
                **{name: result.total(name) for name in ("received", "applied", "duplicate", "dead_lettered")},
                "duration_ms": round((time.monotonic() - began) * 1000, 1),
            },
        )
        return result

    def _commit_offsets(self, polled: dict[Any, list[Any]]) -> None:
        offsets = {
            TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(partition_records[-1].offset + 1, "", -1)
            for tp, partition_records in polled.items()
        }
        try:
            self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            # A rebalance or a broker blip: the batch is committed in the
            # database, so whoever reads it again finds it in the inbox.
            logger.warning("offset commit failed; the batch will be redelivered and deduplicated: %s", error)
            return
        metrics.lag.committed({tp: (records[-1].offset + 1, records[-1].timestamp) for tp, records in polled.items()})

    def _back_off(self, error: BaseException, outage: Outage) -> None:
        delay = self.backoff.next_delay()
        outage.failed(error, retry_in=delay)
        _sleep(delay, self.should_stop)


class _StakesSubscription(ConsumerRebalanceListener):
    """The consumer's subscription to the stakes topic, renewed when the topic changes under it.

    The client sees a topic's new partitions, or a recreated topic (a new
    topic id), within KAFKA_METADATA_MAX_AGE_MS. kafka-python then
    rebalances, but a broker may hand back the old assignment (Tansu does),
    so a change renews the subscription: every member joins anew and the new
    partitions are assigned. A recreated topic starts its offsets again, so
    the committed ones mean nothing there: its partitions are read from the
    beginning, which the inbox makes harmless.
    """

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.known: tuple[Any, frozenset[int]] | None = None
        self.rewind = False
        consumer.subscribe([settings.STAKES_TOPIC], listener=self)

    def check(self) -> None:
        topic = settings.STAKES_TOPIC
        partitions = frozenset(self.consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return  # no metadata yet, or the topic is gone for now
        current = (self.consumer._client.cluster.topic_id(topic), partitions)
        if self.known is not None and current != self.known:
            recreated = current[0] != self.known[0]
            logger.info(
                "stakes topic %s: %d partitions now, %s; rejoining the group",
                topic,
                len(partitions),
                "recreated (reading it from the beginning)" if recreated else "partitions added",
                extra={"topic": topic, "partitions": len(partitions), "recreated": recreated},
            )
            self.rewind = self.rewind or recreated
            self.consumer.unsubscribe()
            self.consumer.subscribe([topic], listener=self)
        self.known = current

    def on_partitions_revoked(self, revoked: Any) -> None:
        metrics.lag.revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.rewind and assigned:
            self.consumer.seek_to_beginning(*assigned)
            self.rewind = False


def _sleep(seconds: float, should_stop: Any) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.05)


def replay_dead_letter(letter: DeadLetter) -> str:
    """Run a dead letter's message through the consumer again (the caller marked it replayed).

    It is counted as received once more: applied, a duplicate, or dead-lettered
    again (a new open letter), so the counters still balance.
    """
    record = Record(
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        key=bytes(letter.key) if letter.key is not None else None,
        value=bytes(letter.value),
        headers=[(name, value.encode()) for name, value in letter.headers.items()],
    )
    result = handle_batch([record])
    for outcome in ("applied", "duplicate", "dead_lettered"):
        if result.total(outcome):
            return outcome
    return "unknown"
