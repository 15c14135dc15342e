"""The generator's plans and population, without a network or a database: pure functions of a seed."""

import random

import pytest

from entries.phones import normalize_phone_number
from loadgen import plan, population

SHAPE = plan.Shape(entries_min=20, entries_max=80, players=1000)
DEFAULTS = plan.Switches()  # the first seed's numbers


def plans(seed: str, count: int, switches: plan.Switches = DEFAULTS, time_scale: float = 1.0):
    return [
        plan.drop_plan(random.Random(f"{seed}/{n}"), number=n, switches=switches, shape=SHAPE, time_scale=time_scale)
        for n in range(1, count + 1)
    ]


def test_the_same_seed_plans_the_same_drops():
    assert plans("a", 20) == plans("a", 20)
    assert plans("a", 20) != plans("b", 20)


def test_each_anomaly_takes_its_share_of_the_drops():
    drops = plans("shares", 4000)

    low = sum(d.low_participation for d in drops) / len(drops)
    burst = sum(d.burst is not None for d in drops) / len(drops)

    assert 0.085 < low < 0.115  # 10 %
    assert 0.04 < burst < 0.06  # 5 %
    assert not any(d.low_participation and d.burst for d in drops)
    assert all(len(d.entries) == 1 and d.cheats == 0 for d in drops if d.low_participation)


def test_a_switched_off_anomaly_is_never_planned():
    off = plan.Switches(low_participation_enabled=False, burst_enabled=False)

    drops = plans("off", 500, off)

    assert not any(d.low_participation or d.burst for d in drops)


def test_cheats_copy_a_distinct_honest_entry_of_their_drop_and_come_after_it():
    for drop in plans("cheats", 200):
        honest = {e.key: e for e in drop.entries if not e.cheat}
        cheats = [e for e in drop.entries if e.cheat]
        assert len({e.player for e in honest.values()}) == len(honest)  # one entry per player
        assert len({c.copies for c in cheats}) == len(cheats)
        for cheat in cheats:
            original = honest[cheat.copies]
            assert cheat.player == original.player and cheat.at >= original.at
            assert cheat.cheat == (population.PHONE if cheat.player % 2 else population.ACCOUNT)
        assert [e.at for e in drop.entries] == sorted(e.at for e in drop.entries)


def test_the_cheaters_share_of_the_entries_is_the_switch():
    drops = plans("share", 1000, plan.Switches(low_participation_enabled=False))

    entries = sum(len(d.entries) for d in drops)
    share = sum(d.cheats for d in drops) / entries

    assert 0.095 < share < 0.105


def test_the_time_scale_shortens_windows_but_keeps_entries_and_burst_rates():
    real = plans("scale", 300)
    scaled = plans("scale", 300, time_scale=1440)

    for one, other in zip(real, scaled, strict=True):
        assert len(one.entries) == len(other.entries)
        assert one.simulated_window_minutes == other.simulated_window_minutes
        if one.burst is None:
            assert other.window_seconds == pytest.approx(one.window_seconds / 1440)
        else:
            assert other.burst is not None and other.burst.per_second == one.burst.per_second
            assert 10 <= other.burst.per_second <= 25
            # the burst's real seconds fit in the scaled window, stretched for it
            assert other.burst.start + other.burst.seconds < other.window_seconds
            burst_moments = [e.at for e in other.entries if e.burst and not e.cheat]
            assert max(burst_moments) - min(burst_moments) <= other.burst.seconds


def test_intervals_and_stats_bursts_follow_their_switches_scaled():
    rng = random.Random("gaps")
    switches = plan.Switches()
    gaps = [plan.interval_seconds(rng, switches, 60) for _ in range(1000)]
    bursts = [plan.stats_506_next(rng, switches, 60) for _ in range(1000)]

    assert min(gaps) >= 20 and max(gaps) <= 55  # minutes at 60x: seconds
    assert min(g for g, _ in bursts) >= 90 and max(g for g, _ in bursts) <= 180
    assert {n for _, n in bursts} == {1, 2, 3, 4}


def test_a_drop_larger_than_the_population_is_refused():
    with pytest.raises(ValueError, match="distinct players"):
        plan.drop_plan(random.Random(1), number=1, switches=plan.Switches(), shape=plan.Shape(players=10), time_scale=1)


@pytest.mark.parametrize("i", [1, 3, 5, 7, 9, 1001, 1999])
def test_a_phone_twin_writes_its_players_number_another_way_and_e164_brings_it_back(i, settings):
    settings.PHONE_DEFAULT_REGION = ""
    twin, honest = population.twin(i), population.honest(i)

    assert twin.shares == population.PHONE and twin.twin_of == honest.username
    assert normalize_phone_number(twin.phone_number) == normalize_phone_number(honest.phone_number)
    assert twin.external_account_id != honest.external_account_id


def test_an_account_twin_shares_the_account_exactly_and_no_number():
    members = population.members(population.MAX_PLAYERS)
    numbers = [normalize_phone_number(m.phone_number) for m in members if m.shares != population.PHONE]

    assert len(numbers) == len(set(numbers))  # every honest player and account twin has a number of its own
    for twin in (m for m in members if m.shares == population.ACCOUNT):
        assert twin.external_account_id == population.honest(twin.index).external_account_id
    spellings = {population.twin(i).phone_number[:4] for i in range(1, 11, 2)}
    assert len(spellings) > 2
