"""Every event type this platform publishes, with its topic and Kafka messageType.

One place for the names: services build events with ``DomainEvent`` and hand
them to ``outbox.services.publish``; the relay reads the routing from here.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

ENVELOPE_VERSION = 1
# One encoder for every event: json.dumps(cls=...) would build one per call.
_ENCODER = DjangoJSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class Route:
    topic: str
    message_type: str


AWARD_CREATED = "AwardCreated"
AWARD_FORFEITED = "AwardForfeited"
LOTTERY_SCHEDULED = "LotteryScheduled"
LOTTERY_OPENED = "LotteryOpened"
LOTTERY_CLOSED = "LotteryClosed"
LOTTERY_DRAWN = "LotteryDrawn"
LOTTERY_CANCELLED = "LotteryCancelled"
LOTTERY_ENTRY_CREATED = "LotteryEntryCreated"

AWARD_TOPIC = "lottery.v1.award"
LIFECYCLE_TOPIC = "lottery.v1.lifecycle"
ENTRY_TOPIC = "lottery.v1.entry"

ROUTES: dict[str, Route] = {
    AWARD_CREATED: Route(AWARD_TOPIC, "lotteryAwardCreated"),
    LOTTERY_SCHEDULED: Route(LIFECYCLE_TOPIC, "lotteryScheduled"),
    LOTTERY_OPENED: Route(LIFECYCLE_TOPIC, "lotteryOpened"),
    LOTTERY_CLOSED: Route(LIFECYCLE_TOPIC, "lotteryClosed"),
    LOTTERY_DRAWN: Route(LIFECYCLE_TOPIC, "lotteryDrawn"),
    LOTTERY_CANCELLED: Route(LIFECYCLE_TOPIC, "lotteryCancelled"),
    AWARD_FORFEITED: Route(LIFECYCLE_TOPIC, "lotteryAwardForfeited"),
    LOTTERY_ENTRY_CREATED: Route(ENTRY_TOPIC, "lotteryEntryCreated"),
}
TOPICS = sorted({route.topic for route in ROUTES.values()})
# Kept for audit past the ordinary retention (OUTBOX_AUDIT_RETENTION_DAYS).
AUDIT_EVENT_TYPES = frozenset({AWARD_CREATED, AWARD_FORFEITED, LOTTERY_DRAWN})


@dataclass(frozen=True)
class DomainEvent:
    """One fact to tell other services. ``data`` must be JSON-safe (decimals as strings)."""

    type: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    # datetime.now(UTC) is timezone.now() with USE_TZ on (always, here) without reading the settings:
    # a batch of stakes builds thousands of events, and settings access showed in its profile.
    occurred_at: datetime = field(default_factory=partial(datetime.now, UTC))
    # The trace this event belongs to (W3C headers, ``{"traceparent": ...}``) when it is not the active
    # one: a batch of stakes publishes each stake's events in that stake's own trace.
    trace: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.type not in ROUTES:
            raise ValueError(f"unknown event type {self.type!r}: add it to outbox.events.ROUTES")

    @property
    def route(self) -> Route:
        return ROUTES[self.type]

    def envelope(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "version": ENVELOPE_VERSION,
            "occurred_at": self.occurred_at.isoformat(),
            "aggregate": {"type": self.aggregate_type, "id": self.aggregate_id},
            "data": self.data,
        }

    def to_json(self) -> str:
        return _ENCODER.encode(self.envelope())
