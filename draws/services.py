"""Seeds, the draw itself, awards and verification.

The draw reads the ballots once, as bytes: PostgreSQL sends the valid ids in
order packed as ``int8send`` (8 bytes each), Python hashes them (byte for byte
what ``draws.algorithm.entries_digest`` computes over the ids) and reads the
winning positions out of the same bytes. No Python object per ballot.
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from core import tracing
from core.db import sql, write_rows
from draws import algorithm, metrics
from draws.errors import AwardNotClaimable, AwardNotFound
from draws.events import award_created, award_forfeited
from draws.models import Draw, DrawVerificationRecord, LotteryAward, LotterySeed
from draws.selectors import awards_to_forfeit
from entries.errors import PlayerBanned
from entries.models import Ballot, Player
from lotteries.models import Lottery
from lotteries.services import lottery_win_sum
from outbox.services import publish

logger = logging.getLogger(__name__)

# One pass over the lottery's valid ballots: their ids, in order, packed as int8send
# (8 bytes each: 8 MB for a million, bytes and not a Python object per ballot). Python
# hashes them (the entries digest) and reads the winning positions out of the same bytes.
_ENTRIES_SQL = sql(
    """
SELECT coalesce(string_agg(int8send(id), ''::bytea ORDER BY id), ''::bytea)
FROM {Ballot}
WHERE lottery_id = %(lottery)s AND status = {valid}
""",
    Ballot=Ballot,
    valid=Ballot.Status.VALID,
)


def seeds_store(seeds: Sequence[tuple[Lottery, bytes]], *, now: datetime) -> None:
    """Keep the secret seeds of lotteries whose commitments were just stored, to be published with them."""
    for lottery, seed in seeds:
        if lottery.seed_commitment != algorithm.commitment(seed):
            raise ValueError("the seed does not match the lottery's published commitment")
    write_rows(LotterySeed, [{"lottery_id": lottery.pk, "seed": seed, "created_at": now} for lottery, seed in seeds])


@metrics.timed_draw
@sensitive_variables("seed")  # never on a debug error page while the draw is unpublished
def draw_run(*, lottery: Lottery, now: datetime) -> Draw | None:
    """Seal the entries, reveal the seed, pick the winners and then the alternates, create the awards.

    The winners are the first ``winners_count`` picks of the shuffle, the
    alternates the next ``alternates_count``; with fewer valid entries than
    that, every entrant is picked, and the units of the prize left without a
    winner are recorded on the draw (``unawarded_quantity``).

    The caller holds ``SELECT ... FOR UPDATE`` on the lottery row, inside a
    transaction, with the lottery in state ``closed``: by the lock protocol
    no ballot of it can be inserted or voided meanwhile, so the one read
    below is the sealed list. Returns ``None`` when there is no valid ballot
    (the caller cancels the lottery).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("draw_run must run inside the caller's transaction")
    connection.ensure_connection()
    # A binary result: 8 MB of bytes for a million ballots, where the text form is 16 MB of hex
    # to parse. Django's own cursors bind on the client side, which cannot ask for one.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_ENTRIES_SQL, {"lottery": lottery.pk}, binary=True)
        row = cursor.fetchone()
        packed = bytes(row[0]) if row else b""
    entries_count = len(packed) // algorithm.ID_BYTES
    if entries_count == 0:
        return None
    digest = algorithm.packed_digest(packed)

    seed = bytes(LotterySeed.objects.get(lottery=lottery).seed)
    picks = lottery.winners_count + lottery.alternates_count
    positions = algorithm.winning_positions(
        seed=seed, entries_digest=digest, entries_count=entries_count, winners_count=picks
    )
    picked_ids = [algorithm.packed_id_at(packed, p) for p in positions]
    del packed
    winning_ids, alternate_ids = algorithm.split_picks(picked_ids, lottery.winners_count)

    draw = Draw.objects.create(
        lottery=lottery,
        algorithm_version=algorithm.ALGORITHM_VERSION,
        seed_commitment=lottery.seed_commitment,
        seed=seed.hex(),
        entries_digest=digest,
        entries_count=entries_count,
        winners_count=lottery.winners_count,
        winning_ballot_ids=winning_ids,
        alternates_count=lottery.alternates_count,
        alternate_ballot_ids=alternate_ids,
        unawarded_quantity=max(lottery.prize_quantity - len(winning_ids), 0),
        drawn_at=now,
    )
    _awards_create(lottery, draw, winning_ids)
    logger.info(
        "lottery drawn",
        extra={
            "lottery_id": lottery.pk,
            "draw_id": draw.pk,
            "entries": entries_count,
            "winning_ballot_ids": winning_ids,
            "alternate_ballot_ids": alternate_ids,
            "unawarded_quantity": draw.unawarded_quantity,
        },
    )
    return draw


def _awards_create(lottery: Lottery, draw: Draw, winning_ids: list[int]) -> None:
    """An award per winning ballot, in rank order, each with its AwardCreated in this same transaction."""
    winners = {
        ballot_id: (player_id, external_id)
        for ballot_id, player_id, external_id in Ballot.objects.filter(pk__in=winning_ids).values_list(
            "id", "player_id", "player__external_account_id"
        )
    }
    win_sum = lottery_win_sum(lottery)
    deadline = claim_deadline(lottery, now=draw.drawn_at)
    awards = LotteryAward.objects.bulk_create(
        LotteryAward(
            lottery=lottery,
            draw=draw,
            ballot_id=ballot_id,
            player_id=winners[ballot_id][0],
            rank=rank,
            prize=lottery.prize,
            win_sum=win_sum,
            currency=lottery.currency if win_sum is not None else "",
            status=LotteryAward.Status.PLAYED_OUT,
            claim_deadline=deadline,
        )
        for rank, ballot_id in enumerate(winning_ids, start=1)
    )
    tracing.annotate({tracing.DRAW_ID: draw.pk, tracing.AWARD_ID: [award.pk for award in awards[: tracing.MAX_IDS]]})
    publish(*(award_created(a, draw=draw, player_external_id=winners[a.ballot_id][1]) for a in awards))


def claim_deadline(lottery: Lottery, *, now: datetime) -> datetime | None:
    """Until when a new award may be claimed: a drop's for ``DROP_CLAIM_SECONDS``; other kinds' are never claimed."""
    if lottery.kind != Lottery.Kind.DROP:
        return None
    return now + timedelta(seconds=settings.DROP_CLAIM_SECONDS)


# --- Claims, forfeits and promoted alternates (drops) --------------------------


def award_claim(*, award_id: int, player: Player, now: datetime | None = None) -> LotteryAward:
    """The winner claims a drop's award before its deadline. Idempotent: a claimed award is returned as it is.

    Locks the award row, so a claim and a forfeit racing at the deadline
    settle one way. Raises ``AwardNotFound`` (no such award of this
    player's), ``PlayerBanned``, or ``AwardNotClaimable`` (not a drop's,
    forfeited, or past its deadline).
    """
    now = now or timezone.now()
    with transaction.atomic():
        award = LotteryAward.objects.select_for_update().filter(pk=award_id, player_id=player.pk).first()
        if award is None:
            raise AwardNotFound(details={"award_id": award_id})
        if award.status == LotteryAward.Status.CLAIMED:
            return award
        if Player.objects.filter(pk=player.pk, is_banned=True).exists():
            raise PlayerBanned()
        deadline = award.claim_deadline
        if award.status != LotteryAward.Status.PLAYED_OUT or deadline is None or now >= deadline:
            until = deadline.isoformat() if deadline is not None else None
            raise AwardNotClaimable(details={"award_id": award.pk, "status": award.status, "claim_deadline": until})
        award.status, award.claimed_at = LotteryAward.Status.CLAIMED, now
        award.save(update_fields=["status", "claimed_at"])
        metrics.claimed()
    logger.info(
        "award claimed",
        extra={"award_id": award.pk, "lottery_id": award.lottery_id, "draw_id": award.draw_id, "player_id": player.pk},
    )
    return award


# Called in the forfeit's transaction with each promoted alternate's award: the floors above that tell the
# winner (notifications registers its winner SMS in notifications/apps.py).
ON_PROMOTED: list[Callable[[LotteryAward, datetime], None]] = []


def award_forfeit(*, award_id: int, reason: str, now: datetime | None = None) -> LotteryAward | None:
    """Forfeit a drop's unclaimed award, with its reason, and promote the draw's next alternate.

    Locks the lottery row, then the award (the order every forfeit takes), so
    two forfeits of one draw promote two different alternates. The next
    alternate is the first of the draw's ranked alternates not yet awarded
    whose player is not banned; it gets an award of the forfeited rank, its
    own claim window and its AwardCreated (``promotes_award_id``). Returns
    the promoted award, or ``None`` (nothing to forfeit any more, or no
    alternate left: the unit stays unawarded, as the forfeited award shows).
    """
    now = now or timezone.now()
    with transaction.atomic():
        lottery_id = LotteryAward.objects.filter(pk=award_id).values_list("lottery_id", flat=True).first()
        if lottery_id is None:
            return None
        lottery = Lottery.objects.select_for_update().get(pk=lottery_id)
        award = LotteryAward.objects.select_for_update().select_related("draw").get(pk=award_id)
        if award.status != LotteryAward.Status.PLAYED_OUT or award.claim_deadline is None:
            return None
        award.status, award.forfeited_at, award.forfeit_reason = LotteryAward.Status.FORFEITED, now, reason
        award.save(update_fields=["status", "forfeited_at", "forfeit_reason"])
        promoted = _alternate_promote(lottery, award, now=now)
        award.lottery = lottery
        publish(award_forfeited(award, promoted=promoted))
        if promoted is not None:
            external_id = promoted.player.external_account_id
            publish(award_created(promoted, draw=award.draw, player_external_id=external_id))
            for hook in ON_PROMOTED:
                hook(promoted, now)
        metrics.forfeited(reason=reason, kind=lottery.kind, promoted=promoted is not None)
    logger.info(
        "award forfeited",
        extra={
            "award_id": award_id,
            "lottery_id": lottery.pk,
            "draw_id": award.draw_id,
            "player_id": award.player_id,
            "reason": reason,
            "promoted_award_id": promoted and promoted.pk,
        },
    )
    return promoted


def _alternate_promote(lottery: Lottery, forfeited: LotteryAward, *, now: datetime) -> LotteryAward | None:
    """The award of the draw's next alternate (ranked, not yet awarded, not banned) in ``forfeited``'s place."""
    draw = forfeited.draw
    awarded = set(LotteryAward.objects.filter(draw=draw).values_list("ballot_id", flat=True))
    candidates = {
        ballot_id: (player_id, banned)
        for ballot_id, player_id, banned in Ballot.objects.filter(pk__in=draw.alternate_ballot_ids).values_list(
            "id", "player_id", "player__is_banned"
        )
    }
    for alternate_rank, ballot_id in enumerate(draw.alternate_ballot_ids, start=1):
        player_id, banned = candidates[ballot_id]
        if ballot_id in awarded or banned:
            continue
        return LotteryAward.objects.create(
            lottery=lottery,
            draw=draw,
            ballot_id=ballot_id,
            player=Player.objects.get(pk=player_id),
            rank=forfeited.rank,
            prize=forfeited.prize,
            win_sum=forfeited.win_sum,
            currency=forfeited.currency,
            status=LotteryAward.Status.PLAYED_OUT,
            claim_deadline=claim_deadline(lottery, now=now),
            promoted_from=forfeited,
            alternate_rank=alternate_rank,
        )
    return None


def awards_forfeit_of_player(player_id: int) -> None:
    """Forfeit a banned player's unclaimed drop awards, promoting alternates (``entries.services.ON_BAN``)."""
    standing = LotteryAward.objects.filter(
        player_id=player_id, status=LotteryAward.Status.PLAYED_OUT, claim_deadline__isnull=False
    )
    for award_id in standing.order_by("id").values_list("id", flat=True):
        award_forfeit(award_id=award_id, reason=LotteryAward.ForfeitReason.BANNED)


def awards_forfeit_due(*, now: datetime | None = None) -> list[int]:
    """Forfeit every drop award unclaimed past its deadline, or whose winner is banned; the ids forfeited."""
    now = now or timezone.now()
    due = awards_to_forfeit(now=now)
    for award_id, reason in due:
        award_forfeit(award_id=award_id, reason=reason, now=now)
    return [award_id for award_id, _ in due]


# --- Verification ---------------------------------------------------------


def draw_ballot_ids(*, draw: Draw, chunk_size: int = 20_000) -> Iterator[int]:
    """The valid ballot ids of the draw's lottery, ascending, streamed from a server-side cursor."""
    return (
        Ballot.objects.filter(lottery_id=draw.lottery_id, status=Ballot.Status.VALID)
        .order_by("id")
        .values_list("id", flat=True)
        .iterator(chunk_size=chunk_size)
    )


@dataclass(frozen=True)
class DrawVerification:
    draw: Draw
    commitment_matches: bool
    entries_digest_matches: bool
    winners_match: bool
    alternates_match: bool
    recomputed_entries_count: int
    recomputed_entries_digest: str
    recomputed_winning_ballot_ids: list[int]
    recomputed_alternate_ballot_ids: list[int]

    @property
    def matches(self) -> bool:
        return self.commitment_matches and self.entries_digest_matches and self.winners_match and self.alternates_match


def draw_verify(*, draw: Draw) -> DrawVerification:
    """Recompute a draw independently of ``draw_run``: stream today's valid
    ballots through the pure algorithm and compare with the record.

    Runs in one REPEATABLE READ snapshot so both passes see the same list.
    """
    seed = bytes.fromhex(draw.seed)
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction:  # only the first statement of a transaction may set it
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        counter = _Counter()
        digest = algorithm.entries_digest(counter.count(draw_ballot_ids(draw=draw)))
        positions = algorithm.winning_positions(
            seed=seed,
            entries_digest=digest,
            entries_count=counter.n,
            winners_count=draw.winners_count + draw.alternates_count,
        )
        wanted = set(positions)
        found = {p: i for p, i in enumerate(draw_ballot_ids(draw=draw)) if p in wanted}
    winners, alternates = algorithm.split_picks([found[p] for p in positions], draw.winners_count)
    return DrawVerification(
        draw=draw,
        commitment_matches=algorithm.commitment(seed) == draw.seed_commitment,
        entries_digest_matches=digest == draw.entries_digest,
        winners_match=winners == list(draw.winning_ballot_ids),
        alternates_match=alternates == list(draw.alternate_ballot_ids),
        recomputed_entries_count=counter.n,
        recomputed_entries_digest=digest,
        recomputed_winning_ballot_ids=winners,
        recomputed_alternate_ballot_ids=alternates,
    )


def draw_verification_stored(*, draw: Draw, now: datetime | None = None) -> DrawVerificationRecord:
    """The server's recomputation of a draw, computed once (by ``draw_verify``) and then read back.

    A sealed draw never changes, so the public endpoint need not recompute it
    per request. The first caller computes and stores it while holding a
    session advisory lock keyed by the draw; callers arriving meanwhile wait on
    the lock, then find the row: a crowd on a new draw computes it once. A
    session lock, not a transaction lock, because ``draw_verify`` needs its
    own REPEATABLE READ transaction, and a waiter must see the row committed
    while it waited. ``manage.py verify_draw`` never reads this: it recomputes.
    """
    record = DrawVerificationRecord.objects.filter(draw=draw).first()
    if record is not None:
        return record
    with _session_lock(f"draws.verification:{draw.pk}"):
        record = DrawVerificationRecord.objects.filter(draw=draw).first()
        if record is None:
            result = draw_verify(draw=draw)
            record = DrawVerificationRecord.objects.create(
                draw=draw,
                commitment_matches=result.commitment_matches,
                entries_digest_matches=result.entries_digest_matches,
                winners_match=result.winners_match,
                alternates_match=result.alternates_match,
                recomputed_entries_count=result.recomputed_entries_count,
                recomputed_entries_digest=result.recomputed_entries_digest,
                recomputed_winning_ballot_ids=result.recomputed_winning_ballot_ids,
                recomputed_alternate_ballot_ids=result.recomputed_alternate_ballot_ids,
                computed_at=now or timezone.now(),
            )
            logger.info(
                "draw verification stored",
                extra={"draw_id": draw.pk, "lottery_id": draw.lottery_id, "matches": result.matches},
            )
    return record


@contextmanager
def _session_lock(name: str) -> Iterator[None]:
    """A PostgreSQL session advisory lock on ``name``, released on exit (or when the connection ends)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [name])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def count(self, items: Iterator[int]) -> Iterator[int]:
        for item in items:
            self.n += 1
            yield item
