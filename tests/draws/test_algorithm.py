"""The pure selection function: deterministic, uniform, unbiased, verifiable."""

import hashlib
from collections import Counter
from typing import Any

import pytest

from draws import algorithm

# Upper 1 % point of the chi-square distribution with 19 degrees of freedom
# (standard table value): a uniform selection exceeds it 1 time in 100.
CHI2_99_DF19 = 36.191

# A fixed list of seeds, so the test is deterministic.
SEEDS = [hashlib.sha256(f"fixed-seed-{i}".encode()).digest() for i in range(20_000)]


def chi_square(counts: Counter[int], categories: int, total: int) -> float:
    expected = total / categories
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in range(categories))


def test_single_winner_is_uniform_over_entries_at_99_percent():
    ballot_ids = list(range(1001, 1021))  # 20 entries
    counts = Counter(
        algorithm.draw(seed=seed, ballot_ids=ballot_ids, winners_count=1).winning_ballot_ids[0] - 1001 for seed in SEEDS
    )
    assert chi_square(counts, 20, len(SEEDS)) < CHI2_99_DF19


def test_every_rank_of_a_multi_winner_draw_is_uniform_at_99_percent():
    ballot_ids = list(range(20))
    draws = [algorithm.draw(seed=seed, ballot_ids=ballot_ids, winners_count=3).winning_ballot_ids for seed in SEEDS]
    for rank in range(3):
        counts = Counter(winners[rank] for winners in draws)
        assert chi_square(counts, 20, len(SEEDS)) < CHI2_99_DF19, f"rank {rank + 1} is not uniform"


def test_winners_are_distinct_and_drawn_from_the_entries():
    ballot_ids = [3, 8, 21, 55, 89]
    for seed in SEEDS[:500]:
        winners = algorithm.draw(seed=seed, ballot_ids=ballot_ids, winners_count=3).winning_ballot_ids
        assert len(set(winners)) == 3
        assert set(winners) <= set(ballot_ids)


def test_more_winners_than_entries_picks_every_entry_once():
    winners = algorithm.draw(seed=SEEDS[0], ballot_ids=[5, 6, 7], winners_count=10).winning_ballot_ids
    assert sorted(winners) == [5, 6, 7]


def test_same_seed_and_entries_give_the_same_winners():
    ballot_ids = list(range(100, 200))
    first = algorithm.draw(seed=SEEDS[1], ballot_ids=ballot_ids, winners_count=5)
    second = algorithm.draw(seed=SEEDS[1], ballot_ids=ballot_ids, winners_count=5)
    assert first == second


def test_the_result_depends_on_the_entries_not_only_on_the_seed():
    # The stream is keyed by the entries digest: adding one ballot changes it.
    results = {
        tuple(algorithm.draw(seed=SEEDS[2], ballot_ids=list(range(1, n)), winners_count=3).winning_ballot_ids)
        for n in range(50, 60)
    }
    assert len(results) > 1


def test_entries_digest_is_sha256_of_big_endian_8_byte_ids():
    ids = [1, 2, 300, 2**40]
    expected = hashlib.sha256(b"".join(i.to_bytes(8, "big", signed=True) for i in ids)).hexdigest()
    assert algorithm.entries_digest(ids) == expected
    assert algorithm.entries_digest(iter(ids)) == expected  # streams from any iterable


def test_packed_ids_give_the_same_digest_and_are_read_back_by_position():
    ids = [-5, 1, 2, 300, 2**40, 2**63 - 1]
    packed = b"".join(i.to_bytes(8, "big", signed=True) for i in ids)  # what int8send sends, in order
    assert algorithm.packed_digest(packed) == algorithm.entries_digest(ids)
    assert [algorithm.packed_id_at(packed, p) for p in range(len(ids))] == ids
    assert algorithm.packed_digest(b"") == algorithm.entries_digest([])
    with pytest.raises(ValueError, match="multiple of 8"):
        algorithm.packed_digest(packed[:-1])


def test_entries_must_be_strictly_ascending():
    with pytest.raises(ValueError, match="ascending"):
        algorithm.entries_digest([1, 3, 2])
    with pytest.raises(ValueError, match="ascending"):
        algorithm.entries_digest([1, 1])


def test_uniform_rejects_values_in_the_biased_tail():
    # For bound 3, 2**64 mod 3 == 1: the single largest value would favour
    # index 0 and must be rejected; the next value decides.
    bound = 3
    biased = 2**64 - 1
    assert biased >= 2**64 - (2**64 % bound)
    assert algorithm._uniform(iter([biased, 4]), bound) == 1
    assert algorithm._uniform(iter([2**64 - 2, 0]), bound) == (2**64 - 2) % bound


def test_verify_detects_any_altered_part():
    seed = SEEDS[3]
    ballot_ids = list(range(10, 60))
    result = algorithm.draw(seed=seed, ballot_ids=ballot_ids, winners_count=2)
    record: dict[str, Any] = {
        "seed_hex": seed.hex(),
        "seed_commitment": algorithm.commitment(seed),
        "ballot_ids": ballot_ids,
        "winners_count": 2,
        "entries_digest_claimed": result.entries_digest,
        "winning_ballot_ids_claimed": result.winning_ballot_ids,
    }
    assert algorithm.verify(**record).matches

    altered_ids = [*ballot_ids[:-1], ballot_ids[-1] + 1]
    check = algorithm.verify(**{**record, "ballot_ids": altered_ids})
    assert not check.matches
    assert not check.entries_digest_matches

    other_seed = SEEDS[4]
    check = algorithm.verify(**{**record, "seed_hex": other_seed.hex()})
    assert not check.matches
    assert not check.commitment_matches

    swapped_ranks = list(reversed(result.winning_ballot_ids))
    check = algorithm.verify(**{**record, "winning_ballot_ids_claimed": swapped_ranks})
    assert not check.matches
    assert not check.winners_match
