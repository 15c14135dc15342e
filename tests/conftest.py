"""Shared fixtures. Everything runs against the real PostgreSQL and Redis.

Data is built through the real services (``lottery_open``, ``ballot_submit``,
``lottery_close``) so the tests exercise the same paths as users do.
"""

import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.utils import timezone
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import live, tracing
from entries.models import Ballot, Player
from entries.services import ballot_submit
from lifecycle.services import lottery_close, lottery_open
from lotteries.models import Lottery, TransitionSource
from outbox.events import TOPICS
from outbox.kafka import ensure_topics, reset_producer
from tests.kafka import Broker

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _clear_throttle_counts() -> None:
    """Throttle counts live in Redis (the tests' own database) and outlive a test: start each from zero."""
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_live_settings() -> Iterator[None]:
    """Live settings are cached per process for seconds (core.live): each test reads its own database's rows."""
    live.forget()
    yield
    live.forget()


@pytest.fixture
def make_player() -> Callable[..., Player]:
    def make(
        *,
        username: str | None = None,
        phone_number: str | None = None,
        external_account_id: str | None = None,
        is_staff: bool = False,
        roles: Sequence[str] = (),
    ) -> Player:
        """A player; with ``roles`` (entries.roles: support, operations, compliance) a staff member in those groups."""
        n = next(_names)
        player = Player.objects.create_user(
            username=username or f"player{n}",
            password="password-for-tests",
            phone_number=f"+1201{2220000 + n:07d}" if phone_number is None else phone_number,  # valid, E.164
            external_account_id=f"acct-{n}" if external_account_id is None else external_account_id,
            is_staff=is_staff or bool(roles),
        )
        if roles:
            player.groups.set(Group.objects.filter(name__in=roles))
            assert player.groups.count() == len(set(roles)), f"unknown role in {roles}"
        return player

    return make


@pytest.fixture
def make_lottery() -> Callable[..., Lottery]:
    """An open lottery whose window is [opens_at, closes_at); by default it ends in an hour."""

    def make(
        *,
        kind: str = Lottery.Kind.DROP,
        closes_at: datetime | None = None,
        opens_at: datetime | None = None,
        winners_count: int = 1,
        alternates_count: int = 0,
        prize_quantity: int | None = None,
        prize: str = "A test prize",
    ) -> Lottery:
        closes_at = closes_at or timezone.now() + timedelta(hours=1)
        opens_at = opens_at or closes_at - timedelta(days=1)
        return lottery_open(
            kind=kind,
            title=f"Test lottery {next(_names)}",
            day=timezone.localdate(closes_at),
            opens_at=opens_at,
            closes_at=closes_at,
            prize=prize,
            winners_count=winners_count,
            alternates_count=alternates_count,
            prize_quantity=prize_quantity,
            source=TransitionSource.SYSTEM,
        )

    return make


@pytest.fixture
def enter() -> Callable[..., Ballot]:
    """Submit a valid ballot through the service, optionally at a given time."""

    def submit(lottery: Lottery, player: Player, *, now: datetime | None = None) -> Ballot:
        return ballot_submit(lottery_id=lottery.pk, player=player, now=now).ballot

    return submit


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for() -> Callable[[Player], APIClient]:
    """An API client authenticated with the player's token, as a real player would be."""

    def make(player: Player) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=player)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def staff(db) -> Player:
    return Player.objects.create_superuser(username="boss", email="boss@example.com", password="boss-password")


@pytest.fixture
def admin_client(client, staff):
    """The test client logged in as ``staff`` (this replaces pytest-django's own ``admin_client``)."""
    client.force_login(staff)
    return client


@pytest.fixture
def drawn_lottery(make_lottery, make_player, enter):
    """A lottery drawn by the service, with one ballot."""
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM)
    return Lottery.objects.get(pk=lottery.pk)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The tests' Kafka-protocol broker, on the port tests.settings chose, with the platform's topics."""
    port = int(settings.KAFKA_BOOTSTRAP_SERVERS[0].rsplit(":", 1)[1])
    broker = Broker(tmp_path_factory.mktemp("kafka") / "tansu.log", port=port).start()
    try:
        ensure_topics([*TOPICS, settings.STAKES_TOPIC, settings.STAKES_DLQ_TOPIC])
        yield broker
    finally:
        reset_producer()
        broker.stop()


@pytest.fixture
def drawn_drop(make_player, enter, settings):
    """A drop of 2 units with 2 alternates, 6 entrants, drawn now: its winners have DROP_CLAIM_SECONDS to claim."""
    from lifecycle.services import drop_create, lottery_close

    settings.DROP_CLAIM_SECONDS = 600
    now = timezone.now()
    drop = drop_create(
        title="Drawn drop", prize="Bike", prize_quantity=2, alternates_count=2,
        opens_at=now - timedelta(hours=1), closes_at=now + timedelta(minutes=1), source="system",
    )  # fmt: skip
    for _ in range(6):
        enter(drop, make_player())
    draw = lottery_close(lottery_id=drop.pk, source="timer", now=drop.closes_at).draw
    assert draw is not None
    return draw


@pytest.fixture
def memory_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process (the platform's sampler at 1.0, kafka-python instrumented), spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.sampler(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, instrument=("kafka",))
    try:
        yield exporter
    finally:
        tracing.uninstall()
