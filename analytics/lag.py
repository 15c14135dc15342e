"""The stake consumer's lag, read from Kafka itself: what the group has committed against what the topic holds.

Per partition of STAKES_TOPIC, ``lag = end offset - committed offset`` of
STAKES_CONSUMER_GROUP (a partition the group never committed counts from its
earliest offset). The consumer commits after each batch's database commit, so
this counts messages not yet applied, or applied in a batch whose offsets are
still to be committed. It is read when asked, with short timeouts; when Kafka
cannot say, the answer says why instead of a number.
"""

from dataclasses import dataclass, field

from django.conf import settings
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError

TIMEOUT_MS = 2000


@dataclass(frozen=True)
class ConsumerLag:
    topic: str
    group: str
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> messages behind
    error: str = ""  # why there is no figure

    @property
    def total(self) -> int | None:
        return None if self.error else sum(self.partitions.values())


def consumer_lag() -> ConsumerLag:
    """The stake consumer group's lag now, per partition; never raises for Kafka trouble."""
    topic, group = settings.STAKES_TOPIC, settings.STAKES_CONSUMER_GROUP
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
            client_id=f"{settings.KAFKA_CLIENT_ID}-lag",
            request_timeout_ms=TIMEOUT_MS,
            bootstrap_timeout_ms=TIMEOUT_MS,
        )
    except (KafkaError, OSError) as error:
        return ConsumerLag(topic, group, error=f"Kafka unreachable: {type(error).__name__}")
    try:
        described = admin.describe_topics([topic])
        numbers = sorted(
            p["partition_index"] for t in described if t.get("name") == topic for p in t.get("partitions") or []
        )
        if not numbers:
            return ConsumerLag(topic, group, error=f"no partitions for topic {topic}")
        partitions = [TopicPartition(topic, n) for n in numbers]
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
    except (KafkaError, OSError) as error:
        return ConsumerLag(topic, group, error=f"Kafka did not answer: {type(error).__name__}")
    finally:
        admin.close()
    lag = {}
    for tp in partitions:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else starts[tp].offset
        lag[tp.partition] = max(0, ends[tp].offset - position)
    return ConsumerLag(topic, group, lag)
