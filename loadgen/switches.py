"""The load generator's chaos switches: live settings (``core.live``) that staff set in admin.

Each is a setting of ``lottery_site.settings`` (its environment variable
gives the default; the first three keep the first seed's names), registered
live as a chaos switch, so changing one needs ``core.change_chaos_switch``.
The generator reads them over HTTP (``GET /api/v1/loadgen/chaos``) every
few seconds, so a change in admin reaches a running generator without a
restart; the stats endpoint reads ``ANOMALY_STATS_506_ENABLED`` itself.
The SMS failures' switches belong to the notifications app
(``ANOMALY_SMS_FAILURE_ENABLED``, ``SMS_FAILURE_RATE``).
"""

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from core import live
from loadgen.plan import Switches

_SHARE = live.number_in(0, 1)
_MINUTES = live.number_in(0.01)
_PER_SECOND = live.number_in(0.1, 1000)
_COUNT = live.number_in(1, 10_000, integer=True)
_REQUESTS = live.number_in(1, 100, integer=True)

# name -> (the plan's field, parser, what it means)
SWITCHES: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "MIN_EVENT_INTERVAL_MINUTES": ("min_interval_minutes", _MINUTES, "shortest time between two drops"),
    "MAX_EVENT_INTERVAL_MINUTES": ("max_interval_minutes", _MINUTES, "longest time between two drops"),
    "CHEATER_PERCENTAGE": ("cheater_percentage", _SHARE, "share of entries that copy another entrant, 0 to 1"),
    "ANOMALY_LOW_PARTICIPATION_ENABLED": ("low_participation_enabled", live.boolean, "drops with a single entry"),
    "ANOMALY_LOW_PARTICIPATION_PERCENTAGE": ("low_participation_percentage", _SHARE, "share of such drops"),
    "ANOMALY_TRAFFIC_BURST_ENABLED": ("burst_enabled", live.boolean, "drops that get a burst of entries"),
    "ANOMALY_TRAFFIC_BURST_PERCENTAGE": ("burst_percentage", _SHARE, "share of such drops"),
    "ANOMALY_TRAFFIC_BURST_MIN_PER_SECOND": ("burst_min_per_second", _PER_SECOND, "a burst's slowest rate (real)"),
    "ANOMALY_TRAFFIC_BURST_MAX_PER_SECOND": ("burst_max_per_second", _PER_SECOND, "a burst's fastest rate (real)"),
    "ANOMALY_TRAFFIC_BURST_MIN_ENTRIES": ("burst_min_entries", _COUNT, "fewest entries in a burst"),
    "ANOMALY_TRAFFIC_BURST_MAX_ENTRIES": ("burst_max_entries", _COUNT, "most entries in a burst"),
    "ANOMALY_STATS_506_ENABLED": ("stats_506_enabled", live.boolean, "the stats endpoint's 506 bursts"),
    "ANOMALY_STATS_506_MIN_INTERVAL_MINUTES": ("stats_506_min_interval_minutes", _MINUTES, "shortest time between"),
    "ANOMALY_STATS_506_MAX_INTERVAL_MINUTES": ("stats_506_max_interval_minutes", _MINUTES, "longest time between"),
    "ANOMALY_STATS_506_MIN_REQUESTS": ("stats_506_min_requests", _REQUESTS, "fewest consecutive 506s in a burst"),
    "ANOMALY_STATS_506_MAX_REQUESTS": ("stats_506_max_requests", _REQUESTS, "most consecutive 506s in a burst"),
}
assert {field for field, _, _ in SWITCHES.values()} == {f.name for f in fields(Switches)}


def register() -> None:
    for name, (_, parse, help_text) in SWITCHES.items():
        live.register(name, parse, f"load generator: {help_text}", chaos=True)


def current() -> dict[str, Any]:
    """Every switch's value now: admin's, else the environment's."""
    return {name: live.live(name) for name in SWITCHES}


def parse(name: str, raw: str) -> Any:
    """A value for switch ``name`` from text (a generator's ``--set``), or ``ValueError``."""
    if name not in SWITCHES:
        raise ValueError(f"{name} is not a chaos switch of the load generator ({', '.join(SWITCHES)})")
    return SWITCHES[name][1](raw)


def as_plan_switches(values: Mapping[str, Any]) -> Switches:
    """The plan's view of switch values by name (missing names keep the first seed's defaults)."""
    return Switches(**{SWITCHES[name][0]: value for name, value in values.items() if name in SWITCHES})
