"""The load generator's server side: its ground truth, the stats endpoint's 506 bursts, its players, the trigger.

The generator itself is a client (``loadgen.client``) that drives the
platform over HTTP; what it injects it reports here
(``anomalies_record``), and so does the simulated SMS gateway
(``sms_failure_record``). Each record is one row of ``InjectedAnomaly``,
one structured log event named as the first seed names it, and one count of
``lottery_anomalies_injected_total{kind}``.

A stats 506 burst is armed by its record: the next ``requests`` calls of
``GET /api/v1/stats``, whoever makes them, answer 506 ``stats_unavailable``
(``stats_unavailable``). The burst lives in the shared cache (Redis), so
every web process answers from the same count, decremented atomically: the
506s are consecutive in the order the server took the requests.
"""

import logging
import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AbstractUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.authorization import require_permission
from core.errors import ApplicationError
from core.live import live
from entries.models import Player
from entries.phones import normalize_phone_number
from entries.services import ballot_submit
from lifecycle.services import drop_create
from loadgen import metrics, plan, population, switches
from loadgen.errors import AnomalySwitchedOff, StatsBurstActive, StatsUnavailable
from loadgen.models import PROVISION_PLAYERS, RECORD_ANOMALY, TRIGGER_DROP, AnomalyKind, InjectedAnomaly
from lotteries.errors import LotteryNotFound
from lotteries.models import Lottery, TransitionSource

logger = logging.getLogger(__name__)

# A 506 asks its client to come back after this many seconds.
STATS_506_RETRY_AFTER_SECONDS = 1
# An armed burst nobody asks for is forgotten after this long, unless its record says otherwise.
STATS_506_DEFAULT_EXPIRY_SECONDS = 3600
_ACTIVE_BURST = "loadgen:stats-506:active"
_ARMING = "arming"


def _remaining_key(anomaly_id: int) -> str:
    return f"loadgen:stats-506:{anomaly_id}:remaining"


@dataclass(frozen=True)
class AnomalyReport:
    """One anomaly as a generator reports it."""

    kind: str
    details: Mapping[str, Any] = field(default_factory=dict)
    lottery_id: int | None = None
    simulated_at: datetime | None = None
    expires_in_seconds: int | None = None  # a stats 506 burst's: forgotten after this long if not all answered


def _announce(anomaly: InjectedAnomaly, *, log: bool) -> None:
    """After the commit: count it, and log it as one event named as the first seed names it."""
    metrics.anomalies_injected.labels(kind=anomaly.kind).inc()
    if log:
        logger.warning(
            anomaly.kind,
            extra={
                "anomaly_id": anomaly.pk,
                "run": anomaly.run,
                "lottery_id": anomaly.lottery_id,
                "details": anomaly.details,
            },
        )


def anomalies_record(
    *, run: str, reports: Sequence[AnomalyReport], actor: AbstractUser | None, now: datetime | None = None
) -> list[InjectedAnomaly]:
    """Record what a generator run injected, in one transaction; a stats 506 report also arms its burst.

    A staff ``actor`` needs ``record_anomaly``. A 506 burst is refused while
    another is still being answered (``StatsBurstActive``) or while
    ``ANOMALY_STATS_506_ENABLED`` is off (``AnomalySwitchedOff``), and then
    nothing of the call is recorded.
    """
    require_permission(actor, RECORD_ANOMALY)
    now = now or timezone.now()
    named = {report.lottery_id for report in reports if report.lottery_id is not None}
    missing = named - set(Lottery.objects.filter(pk__in=named).values_list("id", flat=True))
    if missing:
        raise LotteryNotFound(details={"lottery_id": min(missing)})
    bursts = [report for report in reports if report.kind == AnomalyKind.STATS_506]
    if len(bursts) > 1:
        raise ValueError("one stats 506 burst per call")
    if bursts and not live("ANOMALY_STATS_506_ENABLED"):
        raise AnomalySwitchedOff(details={"switch": "ANOMALY_STATS_506_ENABLED"})
    expiry = (bursts[0].expires_in_seconds or STATS_506_DEFAULT_EXPIRY_SECONDS) if bursts else 0
    if bursts and not cache.add(_ACTIVE_BURST, _ARMING, expiry):
        raise StatsBurstActive(details={"anomaly_id": cache.get(_ACTIVE_BURST)})
    try:
        with transaction.atomic():
            rows = InjectedAnomaly.objects.bulk_create(
                InjectedAnomaly(
                    kind=report.kind,
                    run=run,
                    lottery_id=report.lottery_id,
                    details=dict(report.details),
                    injected_at=now,
                    simulated_at=report.simulated_at,
                )
                for report in reports
            )
            for row in rows:
                transaction.on_commit(lambda row=row: _announce(row, log=True))  # type: ignore[misc]
    except BaseException:
        if bursts:
            cache.delete(_ACTIVE_BURST)
        raise
    for row in rows:
        if row.kind == AnomalyKind.STATS_506:
            cache.set(_remaining_key(row.pk), int(row.details["requests"]), expiry)
            cache.set(_ACTIVE_BURST, row.pk, expiry)  # from here on, stats requests answer 506
    return rows


def sms_failure_record(details: Mapping[str, str]) -> None:
    """The simulated gateway's hook (``notifications.gateway.ON_INJECTED_FAILURE``): it logged the failure itself."""
    anomaly = InjectedAnomaly.objects.create(
        kind=AnomalyKind.SMS_FAILURE, details=dict(details), injected_at=timezone.now()
    )
    _announce(anomaly, log=False)


def stats_unavailable(*, now: datetime | None = None) -> StatsUnavailable | None:
    """The 506 a stats request answers during an armed burst (and the burst counts it), or ``None``.

    Only while ``ANOMALY_STATS_506_ENABLED`` is on. The burst's count is
    decremented in Redis, atomically, so across every web process exactly
    ``requests`` calls answer 506, one after the other; the one that takes
    the last ends the burst.
    """
    if not live("ANOMALY_STATS_506_ENABLED"):
        return None
    active = cache.get(_ACTIVE_BURST)
    if not isinstance(active, int):
        return None
    try:
        left = cache.decr(_remaining_key(active))
    except ValueError:  # its count expired: the burst is over
        cache.delete(_ACTIVE_BURST)
        return None
    if left < 0:
        return None
    if left == 0:
        cache.delete(_ACTIVE_BURST)
    now = now or timezone.now()
    InjectedAnomaly.objects.filter(pk=active).update(
        served=F("served") + 1, first_served_at=Coalesce(F("first_served_at"), now), last_served_at=now
    )
    metrics.stats_506_answered.inc()
    return StatsUnavailable(details={"anomaly_id": active, "retry_after_seconds": STATS_506_RETRY_AFTER_SECONDS})


# --- Players ----------------------------------------------------------------------------


# An unusable password: the generator's players never log in, they use their tokens.
LOADGEN_PLAYER_PASSWORD = f"{UNUSABLE_PASSWORD_PREFIX}load-generator-player"


@dataclass(frozen=True)
class ProvisionedPlayer:
    index: int
    username: str
    token: str
    phone_number: str  # as stored (E.164)
    phone_number_given: str  # as provisioned: a phone twin's other spelling
    external_account_id: str
    twin_of: str | None
    shares: str | None


def players_provision(*, count: int, actor: AbstractUser | None) -> list[ProvisionedPlayer]:
    """The generator's population (``loadgen.population``): ``count`` honest players and their twins, with tokens.

    Idempotent, so every run reuses the same players: the missing ones are
    created (numbers through the platform's one normaliser, E.164; no usable
    password, so they never log in), the missing tokens minted, in bulk. A
    player already there keeps what is stored, and the answer says what is.
    A staff ``actor`` needs ``provision_players``.
    """
    require_permission(actor, PROVISION_PLAYERS)
    members = population.members(count)
    now = timezone.now()
    with transaction.atomic():
        names = [member.username for member in members]
        there = set(Player.objects.filter(username__in=names).values_list("username", flat=True))
        Player.objects.bulk_create(
            [
                Player(
                    username=member.username,
                    password=LOADGEN_PLAYER_PASSWORD,
                    phone_number=normalize_phone_number(member.phone_number),
                    external_account_id=member.external_account_id,
                    date_joined=now,
                )
                for member in members
                if member.username not in there
            ],
            ignore_conflicts=True,  # a provisioning racing this one created it meanwhile
            batch_size=1000,
        )
        stored = {
            row[0]: row
            for row in Player.objects.filter(username__in=names).values_list(
                "username", "id", "phone_number", "external_account_id"
            )
        }
        ids = [row[1] for row in stored.values()]
        have = set(Token.objects.filter(user_id__in=ids).values_list("user_id", flat=True))
        Token.objects.bulk_create(
            [Token(user_id=i, key=Token.generate_key()) for i in ids if i not in have], ignore_conflicts=True
        )
        tokens = dict(Token.objects.filter(user_id__in=ids).values_list("user_id", "key"))
    logger.info("load generator players provisioned", extra={"players": count, "new_tokens": len(ids) - len(have)})
    return [
        ProvisionedPlayer(
            index=member.index,
            username=member.username,
            token=tokens[stored[member.username][1]],
            phone_number=stored[member.username][2],
            phone_number_given=member.phone_number,
            external_account_id=stored[member.username][3],
            twin_of=member.twin_of,
            shares=member.shares,
        )
        for member in members
    ]


# --- The trigger --------------------------------------------------------------------------


@dataclass
class TriggerOutcome:
    run: str
    lottery: Lottery
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    cheats: int = 0
    anomalies: list[InjectedAnomaly] = field(default_factory=list)


TRIGGER_POPULATION = 1000


def drop_trigger(
    *,
    actor: AbstractUser | None,
    entries: int | None = None,
    window_minutes: float | None = None,
    seed: str | None = None,
    now: datetime | None = None,
) -> TriggerOutcome:
    """One drop with its entries, now, as the first seed's ``/trigger`` made one: the generator's plan, played here.

    The plan is the generator's (``loadgen.plan``, with the chaos switches'
    values now): its window (real minutes), low participation, cheats that
    copy an accepted entry. Its entries are submitted one after the other
    through ``ballot_submit``, each cheat after its original, so the answer
    says what each got; a burst is the running generator's (it needs real
    seconds), never the trigger's, and ``entries``, when given, is the count
    (no low participation). Staff need ``trigger_drop`` and, since it
    creates a drop, ``lotteries.create_drop``.
    """
    require_permission(actor, TRIGGER_DROP)
    now = now or timezone.now()
    run = f"trigger-{uuid.uuid4().hex[:12]}"
    rng = random.Random(seed or run)  # noqa: S311 (a simulation)
    values = {**switches.current(), "ANOMALY_TRAFFIC_BURST_ENABLED": False}
    if entries is not None:  # the caller chose the count: no low participation overrides it
        values["ANOMALY_LOW_PARTICIPATION_ENABLED"] = False
    shape = plan.Shape(
        entries_min=entries or plan.Shape.entries_min,
        entries_max=entries or plan.Shape.entries_max,
        window_min_minutes=window_minutes or plan.Shape.window_min_minutes,
        window_max_minutes=window_minutes or plan.Shape.window_max_minutes,
        players=max(TRIGGER_POPULATION, entries or 0),
    )
    drop = plan.drop_plan(rng, number=1, switches=switches.as_plan_switches(values), shape=shape, time_scale=1)
    if not Player.objects.filter(username=population.twin(shape.players).username).exists():
        players_provision(count=shape.players, actor=None)  # once: later triggers find their players there
    lottery = drop_create(
        title=f"Triggered drop {run}",
        prize=drop.prize,
        prize_quantity=drop.prize_quantity,
        alternates_count=drop.alternates_count,
        opens_at=now,
        closes_at=now + timedelta(seconds=drop.window_seconds),
        source=TransitionSource.API,
        actor=actor,
        now=now,
    )
    outcome = TriggerOutcome(run=run, lottery=lottery)
    reports = _trigger_entries(drop, lottery=lottery, outcome=outcome)
    if drop.low_participation:
        reports.append(
            AnomalyReport(kind=AnomalyKind.LOW_PARTICIPATION, lottery_id=lottery.pk, details=_window(lottery, 1))
        )
    outcome.anomalies = anomalies_record(run=run, reports=reports, actor=None)
    outcome.lottery.refresh_from_db()
    return outcome


def _window(lottery: Lottery, entries: int) -> dict[str, Any]:
    return {
        "lottery_id": lottery.pk,
        "entries": entries,
        "opens_at": lottery.opens_at.isoformat(),
        "closes_at": lottery.closes_at.isoformat(),
    }


def _trigger_entries(drop: plan.DropPlan, *, lottery: Lottery, outcome: TriggerOutcome) -> list[AnomalyReport]:
    """Submit the plan's entries in order; a cheat only after its original was accepted. The cheats' reports."""
    members = [population.twin(e.player) if e.cheat else population.honest(e.player) for e in drop.entries]
    by_name = {p.username: p for p in Player.objects.filter(username__in=[m.username for m in members])}
    accepted: dict[int, int] = {}  # entry key -> ballot id
    reports = []
    for entry, member in zip(drop.entries, members, strict=True):
        if entry.cheat and (entry.copies not in accepted):
            continue  # its original was refused: a cheat is sent only after the entry it copies got in
        outcome.sent += 1
        try:
            ballot = ballot_submit(lottery_id=lottery.pk, player=by_name[member.username]).ballot
        except ApplicationError as error:
            outcome.refused[error.code] += 1
            if entry.cheat:
                outcome.cheats += 1
                reports.append(_cheat_report(entry, member, lottery, accepted, error.code, error.details))
            continue
        outcome.accepted += 1
        accepted[entry.key] = ballot.pk
        if entry.cheat:  # a cheat got in: the fraud check missed it, and the ground truth says so
            outcome.cheats += 1
            reports.append(_cheat_report(entry, member, lottery, accepted, "", {"ballot_id": ballot.pk}))
    return reports


def _cheat_report(
    entry: plan.PlannedEntry,
    member: population.Member,
    lottery: Lottery,
    accepted: Mapping[int, int],
    code: str,
    details: Mapping[str, Any],
) -> AnomalyReport:
    return AnomalyReport(
        kind=AnomalyKind.FRAUDULENT_ENTRY,
        lottery_id=lottery.pk,
        details={
            "lottery_id": lottery.pk,
            "cheater": member.username,
            "copies": member.twin_of,
            "original_ballot_id": accepted[entry.copies] if entry.copies is not None else None,
            "shares": member.shares,
            "phone_number_given": member.phone_number if member.shares == population.PHONE else "",
            "code": code,
            "ballot_id": details.get("ballot_id"),
        },
    )
