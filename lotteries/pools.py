"""Pools: lotteries filled by stakes from Kafka, one open pool per (game, currency).

A pool draws among distinct players: a player's first stake in a pool enters
them (a ballot); every stake, first or not, adds to the pot, and the winner
gets ``pot x payout_ratio`` rounded down to the currency's minor unit. When
``pool_size`` distinct players are in, the pool closes (source ``pool_fill``)
and a Celery task draws it after the commit; the next stake opens a new pool.
A pool still short after POOL_MAX_WAIT_SECONDS is cancelled, and its
LotteryCancelled event lists its stakes for refund.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from entries.events import entry_created
from entries.models import Ballot, Player, Stake
from lotteries import events as lottery_events
from lotteries.models import Lottery, PoolGame, TransitionSource
from lotteries.services import PoolTerms, lottery_open, lottery_today, lottery_transition
from outbox.services import publish

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolStake:
    """A stake ready to enter a pool: validated, deduplicated, its player known and not banned."""

    stake_id: str
    player_id: int
    game_id: str
    amount: Decimal
    currency: str
    occurred_at: datetime


def pool_terms(*, game_id: str, currency: str) -> PoolTerms:
    game = PoolGame.objects.filter(pk=game_id).first()
    return PoolTerms(
        game_id=game_id,
        currency=currency,
        pool_size=game.pool_size if game else settings.POOL_SIZE,
        payout_ratio=game.payout_ratio if game else settings.POOL_PAYOUT_RATIO,
    )


def pools_enter(*, stakes: list[PoolStake], now: datetime | None = None) -> list[Stake]:
    """Enter stakes into their pools, in the given order. Runs in the caller's transaction.

    Each (game, currency) is handled under its open pool's row lock
    (``SELECT ... FOR UPDATE``), so consumers in parallel and the expiry
    task never fill or cancel a pool twice. Rows are written in bulk per pool.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("pools_enter must run inside the consumer's transaction")
    now = now or timezone.now()
    by_game: dict[tuple[str, str], list[PoolStake]] = defaultdict(list)
    for stake in stakes:
        by_game[(stake.game_id, stake.currency)].append(stake)
    stored: list[Stake] = []
    for (game_id, currency), items in sorted(by_game.items()):
        stored += _enter_game(game_id=game_id, currency=currency, stakes=items, now=now)
    return stored


def _enter_game(*, game_id: str, currency: str, stakes: list[PoolStake], now: datetime) -> list[Stake]:
    stored: list[Stake] = []
    pool: Lottery | None = None
    members: set[int] = set()
    pending: list[PoolStake] = []
    for stake in stakes:
        if pool is None:  # the first stake, or the first after a pool filled, opens (or finds) the pool
            pool = _open_pool_locked(game_id=game_id, currency=currency, now=now)
            members = set(
                Ballot.objects.filter(lottery=pool, status=Ballot.Status.VALID).values_list("player_id", flat=True)
            )
        pending.append(stake)
        members.add(stake.player_id)
        if len(members) >= (pool.pool_size or settings.POOL_SIZE):
            stored += _write(pool, pending, now=now)
            _close_full(pool, now=now)
            pool, pending = None, []
    if pool is not None and pending:
        stored += _write(pool, pending, now=now)
    return stored


def _open_pool_locked(*, game_id: str, currency: str, now: datetime) -> Lottery:
    """The open pool of (game, currency), locked; opened if there is none."""
    for _attempt in range(3):
        pool = (
            Lottery.objects.select_for_update()
            .filter(kind=Lottery.Kind.POOL, state=Lottery.State.OPEN, game_id=game_id, currency=currency)
            .first()
        )
        if pool is not None:
            return pool
        try:
            with transaction.atomic():  # a savepoint: another consumer may open it first
                pool = lottery_open(
                    kind=Lottery.Kind.POOL,
                    title=f"Pool {game_id} {currency}",
                    day=lottery_today(now=now),
                    opens_at=now,
                    closes_at=now + timedelta(seconds=settings.POOL_MAX_WAIT_SECONDS),
                    prize="",
                    source=TransitionSource.POOL_FILL,
                    pool=pool_terms(game_id=game_id, currency=currency),
                )
        except IntegrityError:
            continue  # the one-open-pool constraint: take the other's pool on the next pass
        return Lottery.objects.select_for_update().get(pk=pool.pk)
    raise RuntimeError(f"could not open or find the pool of {game_id}/{currency}")


def _write(pool: Lottery, stakes: list[PoolStake], *, now: datetime) -> list[Stake]:
    """Ballots for the players new to the pool, a row per stake, the pot, the entry events."""
    known = set(Ballot.objects.filter(lottery=pool, status=Ballot.Status.VALID).values_list("player_id", flat=True))
    newcomers: list[int] = []
    for stake in stakes:
        if stake.player_id not in known:
            known.add(stake.player_id)
            newcomers.append(stake.player_id)
    # Pool ballots carry no phone or account snapshot: fraud rules guard the
    # public API; a stake's player is vouched for by the game service.
    ballots = Ballot.objects.bulk_create(
        Ballot(lottery=pool, player_id=player_id, status=Ballot.Status.VALID, slot=1, created_at=now)
        for player_id in newcomers
    )
    ballot_of = {ballot.player_id: ballot for ballot in ballots}
    rows = Stake.objects.bulk_create(
        Stake(
            stake_id=stake.stake_id,
            player_id=stake.player_id,
            lottery=pool,
            ballot=ballot_of.pop(stake.player_id, None),
            game_id=stake.game_id,
            amount=stake.amount,
            currency=stake.currency,
            occurred_at=stake.occurred_at,
        )
        for stake in stakes
    )
    Lottery.objects.filter(pk=pool.pk).update(pot=F("pot") + sum(s.amount for s in stakes), updated_at=now)
    if ballots:
        players = Player.objects.in_bulk(newcomers)
        publish(*(entry_created(ballot, player=players[ballot.player_id]) for ballot in ballots))
    return rows


def _close_full(pool: Lottery, *, now: datetime) -> None:
    """The pool has its players: close it now, draw it in a task after the commit."""
    from lotteries.tasks import draw_lottery

    lottery_transition(
        pool, Lottery.State.CLOSED, source=TransitionSource.POOL_FILL, actor=None, now=now, note="pool full"
    )
    publish(lottery_events.lottery_closed(pool, source=TransitionSource.POOL_FILL, forced=False))
    pool_id = pool.pk
    transaction.on_commit(lambda: draw_lottery.delay(pool_id))
    logger.info("pool full", extra={"lottery_id": pool_id, "game_id": pool.game_id})


def pool_expire(*, lottery_id: int, now: datetime | None = None) -> bool:
    """Cancel an open pool whose wait is over. Idempotent; returns whether it cancelled it."""
    now = now or timezone.now()
    with transaction.atomic():
        pool = Lottery.objects.select_for_update().filter(pk=lottery_id, kind=Lottery.Kind.POOL).first()
        if pool is None or pool.state != Lottery.State.OPEN or pool.closes_at > now:
            return False
        stakes = [
            {"stake_id": s.stake_id, "player_id": s.player_id, "amount": str(s.amount), "currency": s.currency}
            for s in Stake.objects.filter(lottery=pool).order_by("id")
        ]
        reason = "pool short of players when its wait ended"
        lottery_transition(
            pool, Lottery.State.CANCELLED, source=TransitionSource.BEAT, actor=None, now=now, note=reason
        )
        publish(lottery_events.lottery_cancelled(pool, source=TransitionSource.BEAT, reason=reason, stakes=stakes))
    logger.info("pool cancelled", extra={"lottery_id": lottery_id, "stakes": len(stakes)})
    return True


def expired_pool_ids(*, now: datetime) -> list[int]:
    return list(
        Lottery.objects.filter(kind=Lottery.Kind.POOL, state=Lottery.State.OPEN, closes_at__lte=now)
        .order_by("closes_at")
        .values_list("id", flat=True)
    )
