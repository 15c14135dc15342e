"""Live settings: settings a running process sees change within seconds, without a restart.

An app registers the names it reads live (``register``, in its
``AppConfig.ready``), each with a parser that checks a value. ``live(name)``
answers the value staff set in admin (a ``LiveSetting`` row) or, without
one, the setting from the environment (``django.conf.settings``). Each
process reads every row in one query and keeps them for
``LIVE_SETTINGS_REFRESH_SECONDS``, so a change reaches every worker within
that time, and a hot path pays a dictionary lookup.

A setting registered with ``chaos=True`` is a **chaos switch**: it injects
anomalies (simulated SMS failures, the load generator's bursts). Changing
one in admin needs ``core.change_chaos_switch`` beside the live settings'
own permissions (``CHANGE_CHAOS_SWITCH``).
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError

logger = logging.getLogger(__name__)

# Needed (beside core.change_livesetting) to set, change or delete a chaos switch.
CHANGE_CHAOS_SWITCH = "core.change_chaos_switch"


@dataclass(frozen=True)
class LiveSpec:
    name: str
    parse: Callable[[str], Any]  # raises ValueError for a value it refuses
    help: str
    chaos: bool = False  # a chaos switch: changing it needs CHANGE_CHAOS_SWITCH


REGISTRY: dict[str, LiveSpec] = {}

_lock = threading.Lock()
_values: dict[str, Any] = {}
_read_at: float | None = None


def register(name: str, parse: Callable[[str], Any], help: str, *, chaos: bool = False) -> None:
    """Make ``name`` (a setting of ``django.conf.settings``) live, its values checked by ``parse``;
    ``chaos`` marks it a chaos switch (its own permission to change)."""
    if not hasattr(settings, name):
        raise ValueError(f"{name} is not a setting")
    REGISTRY[name] = LiveSpec(name=name, parse=parse, help=help, chaos=chaos)


def is_chaos_switch(name: str) -> bool:
    spec = REGISTRY.get(name)
    return spec is not None and spec.chaos


def boolean(raw: str) -> bool:
    """A parser for on/off switches: true/false, on/off, yes/no, 1/0 (any case)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def number_in(low: float, high: float | None = None, *, integer: bool = False) -> Callable[[str], Any]:
    """A parser for numbers in [low, high] (integers only with ``integer``)."""

    def parse(raw: str) -> Any:
        value = int(raw) if integer else float(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(f"{value} is not in [{low}, {high if high is not None else 'inf'}]")
        return value

    return parse


def validate(name: str, raw: str) -> Any:
    """The parsed value, or ``ValidationError`` saying why it is refused (admin's form calls this)."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValidationError(f"{name} is not a live setting")
    try:
        return spec.parse(raw.strip())
    except ValueError as error:
        raise ValidationError(f"{name}: {error}") from None


def _refresh() -> None:
    from core.models import LiveSetting  # read lazily: this module is imported before the apps are ready

    values: dict[str, Any] = {}
    for name, raw in LiveSetting.objects.values_list("name", "value"):
        spec = REGISTRY.get(name)
        if spec is None:
            continue
        try:
            values[name] = spec.parse(raw)
        except ValueError:
            logger.warning(
                "live setting %s=%r is not valid; the environment's value applies", name, raw, extra={"setting": name}
            )
    _values.clear()
    _values.update(values)
    _mark_read()


def _mark_read() -> None:
    global _read_at
    _read_at = time.monotonic()


def live(name: str) -> Any:
    """The current value of a registered live setting: admin's, else the environment's."""
    if name not in REGISTRY:
        raise KeyError(f"{name} is not a live setting")
    with _lock:
        if _read_at is None or time.monotonic() - _read_at >= settings.LIVE_SETTINGS_REFRESH_SECONDS:
            try:
                _refresh()
            except DatabaseError as error:  # keep the last values (or the defaults) until the database answers
                logger.warning("live settings unavailable", exc_info=error)
                _mark_read()
        if name in _values:
            return _values[name]
    return getattr(settings, name)


def forget() -> None:
    """Read the rows again at the next ``live`` call (after a change in this process, and between tests)."""
    global _read_at
    with _lock:
        _read_at = None
