"""The verifiable draw, version ``hmac-sha256-fy-v1``. Pure Python, no Django.

Anyone can recompute a draw from its public record with this module alone
(or the short script in the README, which is this file in fewer lines).

Inputs
    seed            32 secret bytes from a CSPRNG, drawn when the lottery opens.
    commitment      ``sha256(seed)`` hex, published when the lottery opens.
    ballot ids      the valid ballot ids of the lottery, strictly ascending.
    winners_count   k, how many winners to pick (capped at the entry count).
    alternates_count
                    a, how many ranked alternates to pick after them (0 but for
                    drops; capped at what the entries leave).

Steps
    1. ``entries_digest = sha256(id_1 || id_2 || ... || id_n)``, each id as
       8 bytes, big-endian, signed (PostgreSQL's ``int8send``).
    2. A stream of 64-bit integers: block ``i`` (i = 0, 1, ...) is
       ``HMAC-SHA256(key=seed, msg=entries_digest || i as 8 bytes big-endian)``,
       read as four big-endian unsigned 64-bit integers in order.
    3. ``uniform(m)``: take the next integer ``x`` from the stream; reject it
       while ``x >= 2**64 - (2**64 mod m)`` so that no index is favoured by
       modulo bias; return ``x mod m``.
    4. A partial Fisher-Yates shuffle of the positions ``0 .. n-1``: for
       ``i`` in ``0 .. k-1``, ``j = i + uniform(n - i)``, swap positions ``i``
       and ``j``; the winner of rank ``i + 1`` is the ballot at position ``i``
       after the swap. Only swapped positions are stored, so memory is O(k).
    5. Alternates continue the same shuffle: for ``i`` in ``k .. k+a-1``, the
       same step gives the alternate of rank ``i - k + 1``. So the first ``k``
       positions are those a draw of ``k`` alone picks, and the alternates are
       as verifiable as the winners.

Binding the stream to the entries digest means the seed (fixed before any
ballot) and the sealed list (fixed before the seed is revealed) together
decide the result, and neither side can steer it alone.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

ALGORITHM_VERSION = "hmac-sha256-fy-v1"
SEED_BYTES = 32

_U64 = 1 << 64


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def commitment(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()


ID_BYTES = 8  # a ballot id in the digest: 8 bytes, big-endian, signed (PostgreSQL's int8send)


def packed_digest(packed: bytes) -> str:
    """The entries digest of ids already packed as ``ID_BYTES`` each, in order (what the database sends)."""
    if len(packed) % ID_BYTES:
        raise ValueError(f"packed ids must be a multiple of {ID_BYTES} bytes")
    return hashlib.sha256(packed).hexdigest()


def packed_id_at(packed: bytes, position: int) -> int:
    """The id at ``position`` (0-based) of ids packed as ``ID_BYTES`` each."""
    return int.from_bytes(packed[position * ID_BYTES : (position + 1) * ID_BYTES], "big", signed=True)


def entries_digest(ballot_ids: Iterable[int]) -> str:
    """sha256 over the ids as 8-byte big-endian signed integers, in order.

    Streams: the ids are hashed as they come, in chunks, never all held.
    Equal to ``packed_digest`` of the same ids packed.
    """
    digest = hashlib.sha256()
    chunk: list[bytes] = []
    previous: int | None = None
    for ballot_id in ballot_ids:
        if previous is not None and ballot_id <= previous:
            raise ValueError("ballot ids must be strictly ascending")
        previous = ballot_id
        chunk.append(ballot_id.to_bytes(ID_BYTES, "big", signed=True))
        if len(chunk) >= 8192:
            digest.update(b"".join(chunk))
            chunk.clear()
    digest.update(b"".join(chunk))
    return digest.hexdigest()


def _random_stream(seed: bytes, digest: bytes) -> Iterator[int]:
    counter = 0
    while True:
        block = hmac.new(seed, digest + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        for offset in range(0, 32, 8):
            yield int.from_bytes(block[offset : offset + 8], "big")
        counter += 1


def _uniform(stream: Iterator[int], bound: int) -> int:
    limit = _U64 - (_U64 % bound)
    while True:
        value = next(stream)
        if value < limit:
            return value % bound


def winning_positions(*, seed: bytes, entries_digest: str, entries_count: int, winners_count: int) -> list[int]:
    """Positions (0-based, into the ascending id list) of the first ``winners_count`` picks, in rank order.

    Ask for winners plus alternates: the first ``k`` are the winners, the rest the alternates in order.
    """
    if entries_count < 0 or winners_count < 1:
        raise ValueError("entries_count must be >= 0 and winners_count >= 1")
    stream = _random_stream(seed, bytes.fromhex(entries_digest))
    swapped: dict[int, int] = {}
    positions = []
    for i in range(min(winners_count, entries_count)):
        j = i + _uniform(stream, entries_count - i)
        at_i, at_j = swapped.get(i, i), swapped.get(j, j)
        swapped[j] = at_i
        positions.append(at_j)
    return positions


@dataclass(frozen=True)
class DrawResult:
    entries_digest: str
    entries_count: int
    winning_ballot_ids: list[int]
    alternate_ballot_ids: list[int]


def split_picks(picks: Sequence[int], winners_count: int) -> tuple[list[int], list[int]]:
    """The ranked picks of a draw as (winners, alternates): the first ``winners_count``, then the rest."""
    return list(picks[:winners_count]), list(picks[winners_count:])


def draw(*, seed: bytes, ballot_ids: Sequence[int], winners_count: int, alternates_count: int = 0) -> DrawResult:
    """The whole draw over an in-memory list: the reference the database path must match."""
    digest = entries_digest(ballot_ids)
    positions = winning_positions(
        seed=seed, entries_digest=digest, entries_count=len(ballot_ids), winners_count=winners_count + alternates_count
    )
    winners, alternates = split_picks([ballot_ids[p] for p in positions], winners_count)
    return DrawResult(digest, len(ballot_ids), winners, alternates)


@dataclass(frozen=True)
class Verification:
    commitment_matches: bool
    entries_digest_matches: bool
    winners_match: bool
    alternates_match: bool

    @property
    def matches(self) -> bool:
        return self.commitment_matches and self.entries_digest_matches and self.winners_match and self.alternates_match


def verify(
    *,
    seed_hex: str,
    seed_commitment: str,
    ballot_ids: Sequence[int],
    winners_count: int,
    entries_digest_claimed: str,
    winning_ballot_ids_claimed: Sequence[int],
    alternates_count: int = 0,
    alternate_ballot_ids_claimed: Sequence[int] = (),
) -> Verification:
    """Recompute a draw from its public record and compare every part."""
    seed = bytes.fromhex(seed_hex)
    result = draw(seed=seed, ballot_ids=ballot_ids, winners_count=winners_count, alternates_count=alternates_count)
    return Verification(
        commitment_matches=hmac.compare_digest(commitment(seed), seed_commitment),
        entries_digest_matches=result.entries_digest == entries_digest_claimed,
        winners_match=result.winning_ballot_ids == list(winning_ballot_ids_claimed),
        alternates_match=result.alternate_ballot_ids == list(alternate_ballot_ids_claimed),
    )
