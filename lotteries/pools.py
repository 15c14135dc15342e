"""Pools: lotteries filled by stakes from Kafka, one open pool per (game, currency).

A pool draws among distinct players: a player's first stake in a pool enters
them (a ballot); every stake, first or not, adds to the pot, and the winner
gets ``pot x payout_ratio`` rounded down to the currency's minor unit. When
``pool_size`` distinct players are in, the pool closes (source ``pool_fill``)
and a Celery task draws it after the commit; the next stake opens a new pool.
A pool still short after POOL_MAX_WAIT_SECONDS is cancelled, and its
LotteryCancelled event lists its stakes for refund.

A batch of stakes costs a fixed number of statements, whatever the number of
pools it opens or fills: pools churn fast (pools of 3), so per-pool round
trips would dominate.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.db import copy_rows, next_ids
from draws import algorithm
from entries.events import entry_created
from entries.models import Ballot
from lotteries import events as lottery_events
from lotteries.models import Lottery, PoolGame, TransitionSource
from lotteries.selectors import stakes_for_refund
from lotteries.services import lottery_today, lottery_transition
from outbox.events import DomainEvent
from outbox.services import publish

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolStake:
    """A stake ready to enter a pool: validated, deduplicated, its player known and not banned."""

    stake_id: str
    player_id: int
    player_external_id: str
    game_id: str
    amount: Decimal
    currency: str
    occurred_at: datetime


@dataclass
class _Plan:
    """What a batch does to one pool: an open one it finds, or one it opens."""

    game_id: str
    currency: str
    pool_size: int
    payout_ratio: Decimal
    members: set[int]
    existing: Lottery | None = None
    newcomers: list[PoolStake] = field(default_factory=list)  # their first stake in this pool
    stakes: list[PoolStake] = field(default_factory=list)
    fills: bool = False
    lottery: Lottery | None = None

    def add(self, stake: PoolStake) -> None:
        self.stakes.append(stake)
        if stake.player_id not in self.members:
            self.members.add(stake.player_id)
            self.newcomers.append(stake)
        self.fills = len(self.members) >= self.pool_size

    @property
    def pot_added(self) -> Decimal:
        return sum((s.amount for s in self.stakes), Decimal(0))


def pools_enter(*, stakes: list[PoolStake], now: datetime | None = None) -> list[int]:
    """Enter stakes into their pools, in the given order, with a fixed number of statements per batch.

    Runs in the caller's transaction. The open pools of the batch's games are
    locked first (``SELECT ... FOR UPDATE``), so consumers in parallel and the
    expiry task never fill or cancel a pool twice; the whole batch is planned
    in memory, then written in bulk. A pool opened and filled within one batch
    is stored closed, with both transitions recorded (one open pool per
    game and currency is a constraint, checked at each statement). Returns
    the ids of the pools that filled, whose draw is queued after the commit.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("pools_enter must run inside the consumer's transaction")
    if not stakes:
        return []
    now = now or timezone.now()
    plans = _plan(stakes)
    _write(plans, now=now)
    filled = [plan.lottery.pk for plan in plans if plan.fills and plan.lottery is not None]
    if filled:
        # Robust: a Redis hiccup must not kill the consumer after its commit;
        # beat's close sweep draws any pool left closed.
        transaction.on_commit(lambda: _queue_draws(filled), robust=True)
    logger.info(
        "stakes entered: %d stakes, %d pools opened, %d filled",
        len(stakes),
        sum(plan.existing is None for plan in plans),
        len(filled),
        extra={"filled": filled},
    )
    return filled


def _queue_draws(lottery_ids: list[int]) -> None:
    from lotteries.tasks import draw_lotteries  # the tasks module imports this one

    draw_lotteries.delay(lottery_ids)


def _plan(stakes: list[PoolStake]) -> list[_Plan]:
    by_game: dict[tuple[str, str], list[PoolStake]] = defaultdict(list)
    for stake in stakes:
        by_game[(stake.game_id, stake.currency)].append(stake)
    # Locked in id order, as every writer of pools does: no deadlock between consumers.
    open_pools = {
        (pool.game_id, pool.currency): pool
        for pool in Lottery.objects.raw(
            "SELECT l.* FROM lotteries_lottery l"
            " JOIN unnest(%s::varchar[], %s::varchar[]) AS g(game_id, currency)"
            " ON l.game_id = g.game_id AND l.currency = g.currency"
            " WHERE l.kind = %s AND l.state = %s ORDER BY l.id FOR UPDATE OF l",
            [
                [game_id for game_id, _ in by_game],
                [currency for _, currency in by_game],
                Lottery.Kind.POOL,
                Lottery.State.OPEN,
            ],
        )
    }
    members: dict[int, set[int]] = defaultdict(set)
    for lottery_id, player_id in Ballot.objects.filter(
        lottery__in=list(open_pools.values()), status=Ballot.Status.VALID
    ).values_list("lottery_id", "player_id"):
        members[lottery_id].add(player_id)
    terms = {game.pk: game for game in PoolGame.objects.filter(pk__in={game_id for game_id, _ in by_game})}

    plans: list[_Plan] = []
    for (game_id, currency), items in by_game.items():
        existing = open_pools.get((game_id, currency))
        plan: _Plan | None = None
        if existing is not None:
            assert existing.pool_size is not None
            assert existing.payout_ratio is not None
            plan = _Plan(game_id, currency, existing.pool_size, existing.payout_ratio, members[existing.pk], existing)
        for stake in items:
            if plan is None:  # the first stake after a pool filled opens the next one
                game = terms.get(game_id)
                size = game.pool_size if game else settings.POOL_SIZE
                ratio = game.payout_ratio if game else settings.POOL_PAYOUT_RATIO
                plan = _Plan(game_id, currency, size, ratio, set())
            plan.add(stake)
            if plan.fills:
                plans.append(plan)
                plan = None
        if plan is not None:
            plans.append(plan)
    return plans


def _write(plans: list[_Plan], *, now: datetime) -> None:
    existing = [plan for plan in plans if plan.existing is not None]
    opened = [plan for plan in plans if plan.existing is None]
    if existing:
        # Existing pools that fill are closed before any new pool of their game is stored open.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE lotteries_lottery l SET pot = l.pot + v.added,"
                " state = CASE WHEN v.fills THEN %s ELSE l.state END, updated_at = %s"
                " FROM unnest(%s::bigint[], %s::numeric[], %s::boolean[]) AS v(id, added, fills) WHERE l.id = v.id",
                [
                    Lottery.State.CLOSED,
                    now,
                    [plan.existing.pk for plan in existing if plan.existing],
                    [plan.pot_added for plan in existing],
                    [plan.fills for plan in existing],
                ],
            )
    for plan in existing:
        plan.lottery = plan.existing

    # New pools, their seeds and their history by COPY (the ORM's per-object
    # cost dominated here), ids reserved first so that the rows can name them.
    seeds = [algorithm.new_seed() for _ in opened]
    day = lottery_today(now=now)
    closes_at = now + timedelta(seconds=settings.POOL_MAX_WAIT_SECONDS)
    new_pools: list[Lottery] = []
    for plan, lottery_id, seed in zip(opened, next_ids("lotteries_lottery", len(opened)), seeds, strict=True):
        plan.lottery = Lottery(
            id=lottery_id,
            kind=Lottery.Kind.POOL,
            state=Lottery.State.CLOSED if plan.fills else Lottery.State.OPEN,
            title=f"Pool {plan.game_id} {plan.currency}",
            day=day,
            opens_at=now,
            closes_at=closes_at,
            prize="",
            winners_count=1,
            seed_commitment=algorithm.commitment(seed),
            game_id=plan.game_id,
            currency=plan.currency,
            pool_size=plan.pool_size,
            payout_ratio=plan.payout_ratio,
            pot=plan.pot_added,
            created_at=now,
            updated_at=now,
        )
        new_pools.append(plan.lottery)
    if new_pools:
        copy_rows(
            "lotteries_lottery",
            ["id", "kind", "state", "title", "day", "opens_at", "closes_at", "prize", "winners_count",
             "seed_commitment", "game_id", "currency", "pool_size", "pot", "payout_ratio", "created_at", "updated_at"],
            ((p.id, p.kind, p.state, p.title, p.day, p.opens_at, p.closes_at, p.prize, p.winners_count,
              p.seed_commitment, p.game_id, p.currency, p.pool_size, p.pot, p.payout_ratio, p.created_at, p.updated_at)
             for p in new_pools),
        )  # fmt: skip
        copy_rows(
            "draws_lotteryseed",
            ["lottery_id", "seed", "created_at"],
            ((pool.pk, seed, now) for pool, seed in zip(new_pools, seeds, strict=True)),
        )
    source = TransitionSource.POOL_FILL
    history = [(pool.pk, "", Lottery.State.OPEN, "") for pool in new_pools]
    history += [(plan.lottery.pk, Lottery.State.OPEN, Lottery.State.CLOSED, "pool full") for plan in plans
                if plan.fills and plan.lottery]  # fmt: skip
    if history:
        copy_rows(
            "lotteries_lotterytransition",
            ["lottery_id", "from_state", "to_state", "source", "actor_id", "forced", "note", "created_at"],
            ((lottery_id, from_state, to_state, source, None, False, note, now)
             for lottery_id, from_state, to_state, note in history),
        )  # fmt: skip

    # Ballots and stakes, ballot ids reserved first so that stakes and events
    # can name them. Pool ballots carry no phone or account snapshot: fraud
    # rules guard the public API; a stake's player is vouched for by the game service.
    entering = [(plan.lottery.pk, stake) for plan in plans if plan.lottery for stake in plan.newcomers]
    ballot_ids = {
        (lottery_id, stake.player_id): ballot_id
        for ballot_id, (lottery_id, stake) in zip(next_ids("entries_ballot", len(entering)), entering, strict=True)
    }
    copy_rows(
        "entries_ballot",
        ["id", "lottery_id", "player_id", "status", "slot", "phone_number", "external_account_id",
         "rejection_reason", "idempotency_key", "created_at"],
        ((ballot_id, lottery_id, player_id, Ballot.Status.VALID, 1, "", "", "", None, now)
         for (lottery_id, player_id), ballot_id in ballot_ids.items()),
    )  # fmt: skip
    first_stake = {stake.stake_id for _, stake in entering}
    copy_rows(
        "entries_stake",
        ["stake_id", "player_id", "lottery_id", "ballot_id", "game_id", "amount", "currency", "occurred_at",
         "created_at"],
        (
            (stake.stake_id, stake.player_id, plan.lottery.pk,
             ballot_ids[(plan.lottery.pk, stake.player_id)] if stake.stake_id in first_stake else None,
             stake.game_id, stake.amount, stake.currency, stake.occurred_at, now)
            for plan in plans
            if plan.lottery
            for stake in plan.stakes
        ),
    )  # fmt: skip

    events: list[DomainEvent] = []
    for plan in plans:
        pool = plan.lottery
        assert pool is not None
        if plan.existing is None:
            events.append(lottery_events.lottery_opened(pool))
        events += [
            entry_created(
                lottery_id=pool.pk,
                ballot_id=ballot_ids[(pool.pk, stake.player_id)],
                player_id=stake.player_id,
                player_external_id=stake.player_external_id,
                created_at=now,
            )
            for stake in plan.newcomers
        ]
        if plan.fills:
            events.append(lottery_events.lottery_closed(pool, source=source, forced=False))
    publish(*events)


def pool_expire(*, lottery_id: int, now: datetime | None = None) -> bool:
    """Cancel an open pool whose wait is over. Idempotent; returns whether it cancelled it."""
    now = now or timezone.now()
    with transaction.atomic():
        pool = Lottery.objects.select_for_update().filter(pk=lottery_id, kind=Lottery.Kind.POOL).first()
        if pool is None or pool.state != Lottery.State.OPEN or pool.closes_at > now:
            return False
        stakes = stakes_for_refund(lottery=pool)
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
