"""Pools: lotteries filled by stakes from Kafka, one open pool per (game, currency).

A pool draws among distinct players: a player's first stake in a pool enters
them (a ballot); every stake, first or not, adds to the pot, and the winner
gets ``pot x payout_ratio`` rounded down to the currency's minor unit
(``lotteries.services.lottery_win_sum``). When ``pool_size`` distinct players
are in, the pool closes (source ``pool_fill``) and a Celery task draws it
after the commit; the next stake opens a new pool. A pool still short after
POOL_MAX_WAIT_SECONDS is cancelled, and its LotteryCancelled event lists its
stakes for refund.

A batch of stakes costs a fixed number of statements, whatever the number of
pools it opens or fills: pools churn fast (pools of 3), so per-pool round
trips would dominate. The rules of opening, entering and closing are those of
every lottery (``lottery_new``, ``lotteries_open``, ``transition_row``,
``entry_created``), written in bulk here.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from opentelemetry.context import Context
from opentelemetry.trace import Span

from core import tracing
from core.db import copy_rows, next_ids, sql
from entries.events import entry_created
from entries.models import Ballot
from lifecycle.services import Opened, lotteries_open
from lotteries import events as lottery_events
from lotteries.models import Lottery, TransitionSource
from lotteries.services import lottery_new, lottery_today, lottery_transition, transition_row, transitions_record
from outbox.events import DomainEvent
from outbox.services import publish
from pools.models import PoolGame, Stake
from pools.selectors import stakes_for_refund
from pools.stake_messages import StakeMessage

logger = logging.getLogger(__name__)

SOURCE = TransitionSource.POOL_FILL
FULL = "pool full"


@dataclass
class _Plan:
    """What a batch does to one pool: an open one it finds, or one it opens."""

    game_id: str
    currency: str
    pool_size: int
    payout_ratio: Decimal
    members: set[int]
    lottery: Lottery | None = None  # the open pool found, or the one this batch opens
    opens: bool = False
    newcomers: list[StakeMessage] = field(default_factory=list)  # their first stake in this pool
    stakes: list[StakeMessage] = field(default_factory=list)
    fills: bool = False

    def add(self, stake: StakeMessage) -> None:
        assert stake.player_id is not None, "a stake enters a pool once its player is known"
        self.stakes.append(stake)
        if stake.player_id not in self.members:
            self.members.add(stake.player_id)
            self.newcomers.append(stake)
        self.fills = len(self.members) >= self.pool_size

    @property
    def pot_added(self) -> Decimal:
        return sum((s.amount for s in self.stakes), Decimal(0))

    @property
    def pool(self) -> Lottery:
        assert self.lottery is not None
        return self.lottery


def pools_enter(*, stakes: Sequence[StakeMessage], now: datetime | None = None) -> list[int]:
    """Enter stakes (their players known and not banned) into their pools, in order, in a fixed number of statements.

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
    plans = _plan(stakes, _open_pools(stakes))
    earlier = _earlier_traces(plans) if tracing.enabled() else {}
    _fill_found(plans, now=now)
    opened = _open_new(plans, now=now)
    ballot_ids, entered = _enter(plans, now=now)
    _store_stakes(plans, ballot_ids, now=now)
    fills = _Fills(plans, earlier)
    try:
        closes, closed = _close_full(plans, now=now, fills=fills)
        # One statement each for the batch: the opening and closing transitions; the
        # events in the order a consumer of one pool must see them (opened, entries, closed).
        transitions_record([*opened.transitions, *closes])
        publish(*opened.events, *entered, *closed)
        draws = fills.draws()
    finally:
        fills.end()
    filled = [plan.pool.pk for plan in plans if plan.fills]
    if filled:
        # Robust: a Redis hiccup must not kill the consumer after its commit;
        # beat's close sweep draws any pool left closed.
        transaction.on_commit(lambda: _queue_draws(draws), robust=True)
    logger.info(
        "stakes entered: %d stakes, %d pools opened, %d filled",
        len(stakes),
        sum(plan.opens for plan in plans),
        len(filled),
        extra={"stakes": len(stakes), "filled": filled},
    )
    return filled


def _queue_draws(draws: list[tuple[Context | None, list[int]]]) -> None:
    from lifecycle.tasks import draw_lotteries  # tasks import the services

    for context, lottery_ids in draws:
        with tracing.attached(context):  # the task carries the trace of the fill (Celery's headers)
            draw_lotteries.delay(lottery_ids)


class _Fills:
    """The trace of each pool the batch fills: that of the stake that filled it, linked to its other stakes.

    With tracing on, each fill is a span (``pool fill``), a child of the
    filling stake's span, linked to the spans of the pool's other stakes,
    this batch's and earlier ones' (their stored traceparents). Its
    LotteryClosed and its draw task carry that trace; untraced pools are
    drawn together by one task.
    """

    def __init__(self, plans: list[_Plan], earlier: dict[int, list[str]]) -> None:
        self.spans: dict[int, Span] = {}  # by id(plan)
        self.plans = [plan for plan in plans if plan.fills]
        if not tracing.enabled():
            return
        for plan in self.plans:
            filling, others = plan.stakes[-1], plan.stakes[:-1]  # a plan ends at the stake that fills it
            traces = [stake.traceparent for stake in others] + (earlier.get(plan.pool.pk, []) if not plan.opens else [])
            self.spans[id(plan)] = tracing.start_span(
                "pool fill",
                {tracing.LOTTERY_ID: plan.pool.pk, tracing.STAKE_ID: filling.stake_id, "pool.size": plan.pool_size},
                context=tracing.context_from({"traceparent": filling.traceparent}),
                links=tracing.links(tracing.context_from({"traceparent": t}) for t in traces[: tracing.MAX_LINKS]),
            )

    def trace_of(self, plan: _Plan) -> dict[str, str] | None:
        """The W3C headers of the fill's trace (the filling stake's, with tracing off), for its events."""
        fill = self.spans.get(id(plan))
        if fill is not None and fill.get_span_context().trace_flags.sampled:
            return tracing.carrier(tracing.context_of(fill))
        traceparent = plan.stakes[-1].traceparent
        return {"traceparent": traceparent} if traceparent else None

    def draws(self) -> list[tuple[Context | None, list[int]]]:
        """The draws to queue: one task per traced fill, in its trace; one for all the others."""
        traced, untraced = [], []
        for plan in self.plans:
            fill = self.spans.get(id(plan))
            if fill is not None and fill.get_span_context().trace_flags.sampled:
                traced.append((tracing.context_of(fill), [plan.pool.pk]))
            else:
                untraced.append(plan.pool.pk)
        return traced + ([(None, untraced)] if untraced else [])

    def end(self) -> None:
        for fill in self.spans.values():
            fill.end()


def _earlier_traces(plans: list[_Plan]) -> dict[int, list[str]]:
    """The traceparents of the stakes already in the open pools this batch fills (one statement)."""
    pool_ids = [plan.pool.pk for plan in plans if plan.fills and not plan.opens]
    found: dict[int, list[str]] = defaultdict(list)
    if pool_ids:
        rows = Stake.objects.filter(lottery_id__in=pool_ids).exclude(traceparent="")
        for lottery_id, traceparent in rows.values_list("lottery_id", "traceparent"):
            found[lottery_id].append(traceparent)
    return found


_OPEN_POOLS_SQL = sql(
    """
SELECT l.* FROM {Lottery} l
JOIN unnest(%(games)s::varchar[], %(currencies)s::varchar[]) AS g(game_id, currency)
  ON l.game_id = g.game_id AND l.currency = g.currency
WHERE l.kind = {pool} AND l.state = {open}
ORDER BY l.id
FOR UPDATE OF l
""",
    Lottery=Lottery,
    pool=Lottery.Kind.POOL,
    open=Lottery.State.OPEN,
)


def _open_pools(stakes: Sequence[StakeMessage]) -> dict[tuple[str, str], Lottery]:
    """The open pools of the batch's games, locked in id order, as every writer of pools locks them (no deadlock)."""
    games = sorted({(stake.game_id, stake.currency) for stake in stakes})
    params = {
        "games": [game_id for game_id, _ in games],
        "currencies": [currency for _, currency in games],
    }
    return {(pool.game_id, pool.currency): pool for pool in Lottery.objects.raw(_OPEN_POOLS_SQL, params)}


def _plan(stakes: Sequence[StakeMessage], open_pools: dict[tuple[str, str], Lottery]) -> list[_Plan]:
    members: dict[int, set[int]] = defaultdict(set)
    for lottery_id, player_id in Ballot.objects.filter(
        lottery__in=list(open_pools.values()), status=Ballot.Status.VALID
    ).values_list("lottery_id", "player_id"):
        members[lottery_id].add(player_id)
    by_game: dict[tuple[str, str], list[StakeMessage]] = defaultdict(list)
    for stake in stakes:
        by_game[(stake.game_id, stake.currency)].append(stake)
    terms = {game.pk: game for game in PoolGame.objects.filter(pk__in={game_id for game_id, _ in by_game})}

    plans: list[_Plan] = []
    for (game_id, currency), items in by_game.items():
        found = open_pools.get((game_id, currency))
        plan = _found_plan(found, members[found.pk]) if found is not None else None
        for stake in items:
            if plan is None:  # the first stake after a pool filled opens the next one
                game = terms.get(game_id)
                size = game.pool_size if game else settings.POOL_SIZE
                ratio = game.payout_ratio if game else settings.POOL_PAYOUT_RATIO
                plan = _Plan(game_id, currency, size, ratio, set(), opens=True)
            plan.add(stake)
            if plan.fills:
                plans.append(plan)
                plan = None
        if plan is not None:
            plans.append(plan)
    return plans


def _found_plan(pool: Lottery, members: set[int]) -> _Plan:
    assert pool.pool_size is not None
    assert pool.payout_ratio is not None
    return _Plan(pool.game_id, pool.currency, pool.pool_size, pool.payout_ratio, members, lottery=pool)


_FILL_SQL = sql(
    """
UPDATE {Lottery} l
SET pot = l.pot + v.added, state = CASE WHEN v.fills THEN {closed} ELSE l.state END, updated_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(added)s::numeric[], %(fills)s::boolean[]) AS v(id, added, fills)
WHERE l.id = v.id
""",
    Lottery=Lottery,
    closed=Lottery.State.CLOSED,
)


def _fill_found(plans: list[_Plan], *, now: datetime) -> None:
    """Add to the pots of the open pools found, closing those that fill (before a new pool of their game opens)."""
    found = [plan for plan in plans if not plan.opens]
    if not found:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _FILL_SQL,
            {
                "now": now,
                "ids": [plan.pool.pk for plan in found],
                "added": [plan.pot_added for plan in found],
                "fills": [plan.fills for plan in found],
            },
        )


def _open_new(plans: list[_Plan], *, now: datetime) -> Opened:
    """Open the batch's new pools as any lottery opens, those it already filled stored closed."""
    opening = [plan for plan in plans if plan.opens]
    day = lottery_today(now=now)
    closes_at = now + timedelta(seconds=settings.POOL_MAX_WAIT_SECONDS)
    for plan in opening:
        plan.lottery = lottery_new(
            kind=Lottery.Kind.POOL,
            title=f"Pool {plan.game_id} {plan.currency}",
            day=day,
            opens_at=now,
            closes_at=closes_at,
            prize="",
            now=now,
            game_id=plan.game_id,
            currency=plan.currency,
            pool_size=plan.pool_size,
            payout_ratio=plan.payout_ratio,
            pot=plan.pot_added,
        )
        if plan.fills:
            plan.lottery.state = Lottery.State.CLOSED
    return lotteries_open([plan.pool for plan in opening], source=SOURCE, now=now, defer=True)


def _close_full(plans: list[_Plan], *, now: datetime, fills: _Fills) -> tuple[list[dict[str, Any]], list[DomainEvent]]:
    """The close of every pool the batch filled (its state was written above): transitions and LotteryClosed."""
    full_plans = [plan for plan in plans if plan.fills]
    full = [plan.pool for plan in full_plans]
    for pool in full:
        pool.state = Lottery.State.CLOSED
    transitions = [
        transition_row(
            lottery_id=pool.pk,
            from_state=Lottery.State.OPEN,
            to_state=Lottery.State.CLOSED,
            source=SOURCE,
            note=FULL,
            now=now,
        )
        for pool in full
    ]
    closed = [
        replace(lottery_events.lottery_closed(plan.pool, source=SOURCE, forced=False), trace=fills.trace_of(plan))
        for plan in full_plans
    ]
    return transitions, closed


def _enter(plans: list[_Plan], *, now: datetime) -> tuple[dict[tuple[int, int], int], list[DomainEvent]]:
    """A ballot for each player's first stake in a pool; returns ballot ids by (pool, player), and EntryCreated.

    Pool ballots carry no phone or account snapshot: fraud rules guard the
    public API; a stake's player is vouched for by the game service.
    """
    entering = [(plan.pool.pk, stake) for plan in plans for stake in plan.newcomers]
    ballot_ids: dict[tuple[int, int], int] = {}
    rows: list[dict[str, Any]] = []
    for ballot_id, (lottery_id, stake) in zip(next_ids(Ballot, len(entering)), entering, strict=True):
        assert stake.player_id is not None
        ballot_ids[(lottery_id, stake.player_id)] = ballot_id
        rows.append(
            {
                "id": ballot_id,
                "lottery_id": lottery_id,
                "player_id": stake.player_id,
                "status": Ballot.Status.VALID,
                "slot": 1,
                "created_at": now,
            }
        )
    copy_rows(Ballot, rows)
    events: list[DomainEvent] = [
        entry_created(
            lottery_id=lottery_id,
            ballot_id=ballot_ids[(lottery_id, stake.player_id)],
            player_id=stake.player_id,
            player_external_id=stake.player_external_id,
            created_at=now,
            trace={"traceparent": stake.traceparent} if stake.traceparent else None,  # the stake's own trace
        )
        for lottery_id, stake in entering
        if stake.player_id is not None
    ]
    return ballot_ids, events


def _store_stakes(plans: list[_Plan], ballot_ids: dict[tuple[int, int], int], *, now: datetime) -> None:
    """Keep every stake, the first of each player in a pool pointing at the ballot it made."""
    first = {stake.stake_id for plan in plans for stake in plan.newcomers}
    copy_rows(
        Stake,
        (
            {
                "stake_id": stake.stake_id,
                "player_id": stake.player_id,
                "lottery_id": plan.pool.pk,
                "ballot_id": ballot_ids[(plan.pool.pk, stake.player_id)] if stake.stake_id in first else None,
                "game_id": stake.game_id,
                "amount": stake.amount,
                "currency": stake.currency,
                "occurred_at": stake.occurred_at,
                "created_at": now,
                "traceparent": stake.traceparent,
            }
            for plan in plans
            for stake in plan.stakes
            if stake.player_id is not None
        ),
    )


def pool_expire(*, lottery_id: int, now: datetime | None = None) -> bool:
    """Cancel an open pool whose wait is over. Idempotent; returns whether it cancelled it."""
    now = now or timezone.now()
    with transaction.atomic():
        pool = Lottery.objects.select_for_update().filter(pk=lottery_id, kind=Lottery.Kind.POOL).first()
        if pool is None or pool.state != Lottery.State.OPEN or pool.closes_at > now:
            return False
        stakes = stakes_for_refund(pool)
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
