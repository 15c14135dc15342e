"""What the load generator does next, decided ahead and without a network: the pure part of ``loadgen``.

A drop's plan says who enters it, when (seconds after it opens, on the wall
clock), which entries are cheats and which accepted entry each one copies,
and which anomaly it carries: low participation (one entry) or a traffic
burst (entries sent at a fixed rate of real seconds). The generator sends a
plan over HTTP (``loadgen.client``); the trigger endpoint enters one in the
server (``loadgen.services.drop_trigger``). Every draw comes from the
``random.Random`` it is given, so a run's seed replays the same drops.

The time scale divides the intervals between drops, their entrance windows
and the period of the stats endpoint's 506 bursts; it keeps the number of
entries per drop and the burst rates, which are real entries per second.
"""

import random
from dataclasses import dataclass, field

from loadgen.population import ACCOUNT, PHONE

PRIZES = ("Sneakers, size 42", "Signed vinyl", "Console", "Concert tickets", "Limited hoodie", "Watch")


@dataclass(frozen=True)
class Switches:
    """The chaos switches' values a plan is made with (``loadgen.switches`` names them)."""

    min_interval_minutes: float = 20
    max_interval_minutes: float = 55
    cheater_percentage: float = 0.10
    low_participation_enabled: bool = True
    low_participation_percentage: float = 0.10
    burst_enabled: bool = True
    burst_percentage: float = 0.05
    burst_min_per_second: float = 10
    burst_max_per_second: float = 25
    burst_min_entries: int = 50
    burst_max_entries: int = 150
    stats_506_enabled: bool = True
    stats_506_min_interval_minutes: float = 90
    stats_506_max_interval_minutes: float = 180
    stats_506_min_requests: int = 1
    stats_506_max_requests: int = 4


@dataclass(frozen=True)
class Shape:
    """The generator's own numbers (its flags): entries per drop, the entrance window, the population."""

    entries_min: int = 20
    entries_max: int = 80
    window_min_minutes: float = 30
    window_max_minutes: float = 240
    players: int = 1000


@dataclass(frozen=True)
class PlannedEntry:
    key: int  # unique in its plan
    at: float  # seconds after the drop opened; a cheat also waits for its original's 201
    player: int  # population index: the honest player, or (a cheat) the twin of that index
    cheat: str | None = None  # PHONE or ACCOUNT: the twin sends it, copying entry ``copies``
    copies: int | None = None  # the key of the honest entry a cheat copies
    burst: bool = False


@dataclass(frozen=True)
class Burst:
    start: float  # seconds after opening
    per_second: float
    entries: int

    @property
    def seconds(self) -> float:
        return self.entries / self.per_second


@dataclass(frozen=True)
class DropPlan:
    number: int
    window_seconds: float  # the real window, opens_at to closes_at
    simulated_window_minutes: float
    prize: str
    prize_quantity: int
    alternates_count: int
    entries: list[PlannedEntry] = field(default_factory=list)
    low_participation: bool = False
    burst: Burst | None = None

    @property
    def cheats(self) -> int:
        return sum(1 for entry in self.entries if entry.cheat)


def _between(rng: random.Random, low: float, high: float) -> float:
    """Uniform in [low, high]; a maximum set below the minimum counts as the minimum."""
    return rng.uniform(low, max(low, high))


def _between_int(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, max(low, high))


def interval_seconds(rng: random.Random, switches: Switches, time_scale: float) -> float:
    """Wall seconds until the next drop: MIN_EVENT_INTERVAL_MINUTES to MAX_EVENT_INTERVAL_MINUTES, scaled."""
    return _between(rng, switches.min_interval_minutes, switches.max_interval_minutes) * 60 / time_scale


def stats_506_next(rng: random.Random, switches: Switches, time_scale: float) -> tuple[float, int]:
    """Wall seconds until the next stats 506 burst, and how many consecutive requests it answers 506."""
    minutes = _between(rng, switches.stats_506_min_interval_minutes, switches.stats_506_max_interval_minutes)
    requests = _between_int(rng, switches.stats_506_min_requests, switches.stats_506_max_requests)
    return minutes * 60 / time_scale, requests


def drop_plan(rng: random.Random, *, number: int, switches: Switches, shape: Shape, time_scale: float) -> DropPlan:
    """The plan of drop ``number``: its window, its anomaly if any, and its entries in the order they go out.

    One uniform draw picks the anomaly, so each keeps its share: low
    participation below ``low_participation_percentage``, a burst in the
    next ``burst_percentage``. Each entry is a cheat with probability
    ``cheater_percentage``, copying an honest entry of the same drop (a
    distinct one per cheat; a drop with fewer honest entries than cheats
    sends the rest honestly, as a one-entry drop always does). Raises
    ``ValueError`` when the population is too small for the drop.
    """
    # Long: one plan, read top to bottom: the window, the anomaly, the slots, the cheats' originals.
    simulated_minutes = _between(rng, shape.window_min_minutes, shape.window_max_minutes)
    window = simulated_minutes * 60 / time_scale
    pick = rng.random()
    low_share = switches.low_participation_percentage if switches.low_participation_enabled else 0.0
    low = pick < low_share
    burst: Burst | None = None
    if not low and switches.burst_enabled and pick < low_share + switches.burst_percentage:
        per_second = _between(rng, switches.burst_min_per_second, switches.burst_max_per_second)
        count = _between_int(rng, switches.burst_min_entries, switches.burst_max_entries)
        burst = Burst(start=rng.uniform(0, 0.3) * window, per_second=per_second, entries=count)
        # The burst keeps its real rate whatever the time scale, so the window stretches to hold it.
        window = max(window, burst.start + burst.seconds + max(1.0, 0.1 * window))
    normal = 1 if low else _between_int(rng, shape.entries_min, shape.entries_max)
    moments = sorted(rng.uniform(0, 0.8 * window) for _ in range(normal))  # the last fifth: their way to the server
    slots: list[tuple[float, bool]] = [(at, False) for at in moments]
    if burst is not None:
        slots += [(burst.start + j / burst.per_second, True) for j in range(burst.entries)]
    cheat_slot = [not low and rng.random() < switches.cheater_percentage for _ in slots]
    honest_slots = [i for i, cheat in enumerate(cheat_slot) if not cheat]
    cheat_slots = [i for i, cheat in enumerate(cheat_slot) if cheat]
    while len(cheat_slots) > len(honest_slots):  # too few originals: the last cheats enter honestly
        honest_slots.append(cheat_slots.pop())
    if len(honest_slots) > shape.players:
        raise ValueError(
            f"drop {number} needs {len(honest_slots)} distinct players; the population has {shape.players}"
        )
    players = rng.sample(range(1, shape.players + 1), len(honest_slots))
    player_of = dict(zip(sorted(honest_slots), players, strict=True))
    originals = sorted(honest_slots)
    rng.shuffle(originals)
    entries = [
        PlannedEntry(key=i, at=slots[i][0], player=player_of[i], burst=slots[i][1]) for i in sorted(honest_slots)
    ]
    for i, original in zip(cheat_slots, originals, strict=False):
        copied = player_of[original]
        entries.append(
            PlannedEntry(
                key=i,
                at=max(slots[i][0], slots[original][0]),
                player=copied,
                cheat=PHONE if copied % 2 else ACCOUNT,
                copies=original,
                burst=slots[i][1],
            )
        )
    entries.sort(key=lambda entry: (entry.at, entry.cheat is not None, entry.key))  # a cheat after its original
    return DropPlan(
        number=number,
        window_seconds=window,
        simulated_window_minutes=simulated_minutes,
        prize=rng.choice(PRIZES),
        prize_quantity=rng.randint(1, 3),
        alternates_count=rng.randint(0, 2),
        entries=entries,
        low_participation=low,
        burst=burst,
    )
