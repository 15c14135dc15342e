"""Reads of the business metrics: the hourly rows, the daily summary, and their reconciliation.

The reconciliation checks every hour of a range two ways:

* the stake flow, against the rows each count stands for: the consumer's
  hourly counters say ``received = applied + duplicate + dead-lettered``;
  ``applied`` must equal the stakes stored and the inbox rows claimed in that
  hour, and ``dead-lettered`` the dead letters stored (the inbox and replayed
  dead letters are purged after their retention: older hours are checked
  against what is left, and say so);
* the hourly table, against its sources: each hour's stored columns, for each
  kind and currency, must equal what ``analytics.measures`` computes from the
  source rows now. An hour that beat's refresh has not recomputed since it
  ended is ``pending`` until that is due (``analytics.days.recompute_due``, two
  refresh periods after the hour's end); after that it is checked, so a
  refresh that stopped running shows as failing hours, not as pending ones.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max, QuerySet, Sum
from django.utils import timezone

from analytics import measures
from analytics.days import HOUR, hour_ceil, recompute_due, refresh_window
from analytics.lag import ConsumerLag, consumer_lag
from analytics.models import DailySummary, HourlyMetric
from core.db import sql
from core.tallies import hour_of
from entries.models import Ballot
from lotteries.models import Lottery
from notifications.models import Notification
from outbox.models import ConsumerHourCounter, DeadLetter, InboxMessage
from outbox.pipeline import OutboxBacklog, PipelineStatus, outbox_backlog, pipeline_status
from pools.models import Stake


def hourly_metrics(
    *, start: datetime | None = None, end: datetime | None = None, kind: str | None = None, currency: str | None = None
) -> QuerySet[HourlyMetric]:
    """Hourly rows, newest first: ``start <= hour < end``, of a kind and currency when given."""
    rows = HourlyMetric.objects.all()
    if start is not None:
        rows = rows.filter(hour__gte=start)
    if end is not None:
        rows = rows.filter(hour__lt=end)
    if kind is not None:
        rows = rows.filter(kind=kind)
    if currency is not None:
        rows = rows.filter(currency=currency)
    return rows.order_by("-hour", "kind", "currency")


def daily_summary(
    *, first: Any = None, last: Any = None, kind: str | None = None, currency: str | None = None
) -> QuerySet[DailySummary]:
    """Days (``business_metrics_daily``), newest first, ``first <= day <= last``; kind ``*`` is every kind."""
    rows = DailySummary.objects.all()
    if first is not None:
        rows = rows.filter(day__gte=first)
    if last is not None:
        rows = rows.filter(day__lte=last)
    if kind is not None:
        rows = rows.filter(kind=kind)
    if currency is not None:
        rows = rows.filter(currency=currency)
    return rows.order_by("-day", "kind", "currency")


def hourly_series(*, hours: int = 48, now: datetime | None = None) -> dict[str, Any]:
    """The last ``hours`` hours (the current one included), summed over kinds: for the operations page's charts.

    Money is summed per currency, never across currencies.
    """
    end = hour_of(now or timezone.now()) + HOUR
    start = end - hours * HOUR
    labels = [start + n * HOUR for n in range(hours)]
    position = {hour: n for n, hour in enumerate(labels)}
    counts = {name: [0] * hours for name in ("ballots_accepted", "ballots_refused", "fraud_rejections")}
    money: dict[str, dict[str, list[float]]] = {"staked_revenue": {}, "payouts": {}}
    rows = (
        HourlyMetric.objects.filter(hour__gte=start, hour__lt=end)
        .values("hour", "currency")
        .annotate(**{name: Sum(name) for name in [*counts, *money]})
    )
    plain: list[dict[str, Any]] = [dict(row) for row in rows]  # the columns are named at run time
    for row in plain:
        n = position[row["hour"]]
        for name, series in counts.items():
            series[n] += row[name]
        if row["currency"]:
            for name, by_currency in money.items():
                by_currency.setdefault(row["currency"], [0.0] * hours)[n] += float(row[name])
    for name, by_currency in money.items():  # a currency with nothing to show in a measure is left out of it
        money[name] = {currency: values for currency, values in by_currency.items() if any(values)}
    return {"hours": [hour.isoformat() for hour in labels], **counts, **money}


def last_recomputed() -> datetime | None:
    """When the hourly table was last recomputed (the newest ``computed_at``), or None before the first run."""
    value: datetime | None = HourlyMetric.objects.aggregate(at=Max("computed_at"))["at"]
    return value


# --- Reconciliation -------------------------------------------------------------------------------

_STAKE_FLOW_SQL = sql(
    """
SELECT hour, sum(received), sum(applied), sum(duplicate), sum(dead_lettered), 'counter' FROM {ConsumerHourCounter}
WHERE consumer = %(consumer)s AND hour >= %(start)s AND hour < %(end)s GROUP BY hour
UNION ALL
SELECT date_trunc('hour', created_at, 'UTC'), count(*), 0, 0, 0, 'stakes' FROM {Stake}
WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY 1
UNION ALL
SELECT date_trunc('hour', received_at, 'UTC'), count(*), 0, 0, 0, 'inbox' FROM {InboxMessage}
WHERE consumer = %(consumer)s AND received_at >= %(start)s AND received_at < %(end)s GROUP BY 1
UNION ALL
SELECT date_trunc('hour', created_at, 'UTC'), count(*), 0, 0, 0, 'dead_letters' FROM {DeadLetter}
WHERE consumer = %(consumer)s AND created_at >= %(start)s AND created_at < %(end)s GROUP BY 1
""",
    ConsumerHourCounter=ConsumerHourCounter,
    Stake=Stake,
    InboxMessage=InboxMessage,
    DeadLetter=DeadLetter,
)


@dataclass
class StakeFlow:
    """One hour's stake messages: the counters, and the rows they must match."""

    received: int = 0
    applied: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    stakes_stored: int = 0
    inbox_rows: int = 0
    dead_letters: int = 0

    def add(self, other: "StakeFlow") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Mismatch:
    """One column of one dimension of an hour: what the table holds, and what the sources say."""

    column: str
    kind: str
    currency: str
    table: Decimal
    sources: Decimal

    @property
    def dimension(self) -> str:
        return f"{self.kind} {self.currency}" if self.currency else self.kind


@dataclass
class HourCheck:
    hour: datetime
    stakes: StakeFlow
    failures: list[str] = field(default_factory=list)  # "check: what differs"
    table: str = "ok"  # ok, failing, pending (not recomputed since the hour ended, and not due yet)
    mismatches: list[Mismatch] = field(default_factory=list)
    inbox_checked: bool = True
    dead_letters_checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Reconciliation:
    start: datetime
    end: datetime
    hours: list[HourCheck]
    totals: StakeFlow
    total_failures: list[str]
    last_recomputed: datetime | None

    @property
    def failing(self) -> list[HourCheck]:
        return [hour for hour in self.hours if not hour.ok]

    @property
    def failing_hour_starts(self) -> list[datetime]:
        return [hour.hour for hour in self.failing]

    @property
    def ok(self) -> bool:
        return not self.failing and not self.total_failures

    @property
    def status_word(self) -> str:
        return "ok" if self.ok else "failing"


def reconciliation(*, start: datetime, end: datetime, now: datetime | None = None) -> Reconciliation:
    """Check the hours ``[start, end)`` (widened to whole hours): the stake flow and the table against sources."""
    now = now or timezone.now()
    start, end = hour_of(start), hour_ceil(end)
    params = measures.parameters(start=start, end=end, tz=settings.LOTTERY_TIME_ZONE)
    flows = _stake_flows(params)
    stored, stored_at = _table_by_hour(start, end)
    sources = _sources_by_hour(params)
    last = last_recomputed()
    inbox_kept_from = now - timedelta(days=settings.INBOX_RETENTION_DAYS)
    letters_kept_from = now - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS)

    hours: list[HourCheck] = []
    totals = StakeFlow()
    hour = start
    while hour < end:
        flow = flows.get(hour, StakeFlow())
        check = HourCheck(hour=hour, stakes=flow)
        check.inbox_checked, check.dead_letters_checked = hour >= inbox_kept_from, hour >= letters_kept_from
        _check_flow(check)
        recomputed_at = stored_at.get(hour, last)
        if (recomputed_at is None or recomputed_at < hour + HOUR) and now < recompute_due(hour):
            check.table = "pending"
        else:
            _check_table(check, stored.get(hour, {}), sources.get(hour, {}))
        totals.add(flow)
        hours.append(check)
        hour += HOUR
    total_failures = []
    if totals.received != totals.stakes_stored + totals.duplicate + totals.dead_lettered:
        total_failures.append(
            f"stakes_balance: received {totals.received} != stored {totals.stakes_stored} + duplicate "
            f"{totals.duplicate} + dead-lettered {totals.dead_lettered}"
        )
    return Reconciliation(start, end, hours, totals, total_failures, last)


def _stake_flows(params: dict[str, Any]) -> dict[datetime, StakeFlow]:
    flows: dict[datetime, StakeFlow] = defaultdict(StakeFlow)
    with connection.cursor() as cursor:
        cursor.execute(_STAKE_FLOW_SQL, params)
        for hour, received, applied, duplicate, dead, source in cursor.fetchall():
            flow = flows[hour]
            if source == "counter":
                flow.received, flow.applied, flow.duplicate, flow.dead_lettered = received, applied, duplicate, dead
            elif source == "stakes":
                flow.stakes_stored = received
            elif source == "inbox":
                flow.inbox_rows = received
            else:
                flow.dead_letters = received
    return flows


def _check_flow(check: HourCheck) -> None:
    f = check.stakes
    dead = f.dead_letters if check.dead_letters_checked else f.dead_lettered
    if f.received != f.stakes_stored + f.duplicate + dead:
        check.failures.append(
            f"stakes_balance: received {f.received} != stored {f.stakes_stored} + duplicate {f.duplicate} "
            f"+ dead letters {dead}"
        )
    if f.applied != f.stakes_stored:
        check.failures.append(f"stakes_stored: applied {f.applied} != stakes stored {f.stakes_stored}")
    if check.inbox_checked and f.applied != f.inbox_rows:
        check.failures.append(f"inbox: applied {f.applied} != inbox rows {f.inbox_rows}")
    if check.dead_letters_checked and f.dead_lettered != f.dead_letters:
        check.failures.append(f"dead_letters: dead-lettered {f.dead_lettered} != dead letters {f.dead_letters}")


Dimension = tuple[str, str]  # (kind, currency): each row of the table is one hour of one
ByDimension = dict[Dimension, dict[str, Decimal]]


def _check_table(check: HourCheck, stored: ByDimension, sources: ByDimension) -> None:
    """Column by column, for each kind and currency: a count filed under the wrong one, or money in the wrong
    currency, is a mismatch, even where the hour's sums agree."""
    for kind, currency in sorted(stored.keys() | sources.keys()):
        table, source = stored.get((kind, currency), {}), sources.get((kind, currency), {})
        for column in measures.COLUMNS:
            held, counted = table.get(column, Decimal(0)), source.get(column, Decimal(0))
            if held != counted:
                check.mismatches.append(Mismatch(column, kind, currency, held, counted))
    if check.mismatches:
        check.table = "failing"
        check.failures.append(
            "table: "
            + ", ".join(f"{m.column} ({m.dimension}): table {m.table}, sources {m.sources}" for m in check.mismatches)
        )


def _table_by_hour(start: datetime, end: datetime) -> tuple[dict[datetime, ByDimension], dict[datetime, Any]]:
    """Each hour's stored columns by kind and currency, and when that hour was last recomputed."""
    rows = HourlyMetric.objects.filter(hour__gte=start, hour__lt=end).values(
        "hour", "kind", "currency", "computed_at", *measures.COLUMNS
    )
    stored: dict[datetime, ByDimension] = defaultdict(dict)
    computed: dict[datetime, Any] = {}
    for row in rows:
        plain: dict[str, Any] = dict(row)  # the columns are named at run time
        stored[plain["hour"]][(plain["kind"], plain["currency"])] = {c: Decimal(plain[c]) for c in measures.COLUMNS}
        computed[plain["hour"]] = max(computed.get(plain["hour"], plain["computed_at"]), plain["computed_at"])
    return stored, computed


def _sources_by_hour(params: dict[str, Any]) -> dict[datetime, ByDimension]:
    """Each hour's columns by kind and currency as the sources say now (the recomputation's own SELECTs)."""
    sums: dict[datetime, ByDimension] = defaultdict(lambda: defaultdict(lambda: defaultdict(Decimal)))
    with connection.cursor() as cursor:
        for group in measures.GROUPS:
            cursor.execute(group.select, params)
            names = [column.name for column in cursor.description or []]
            for row in cursor.fetchall():
                if group is measures.ENTRIES:
                    values = dict(zip(names, row, strict=True))
                    if values["level"] != measures.HOUR_LEVEL:
                        continue
                    dimension = (values["kind"], values["currency"])
                else:  # (hour, kind, currency, *columns)
                    dimension = (row[1], row[2])
                offset = len(row) - len(group.columns)
                for column, value in zip(group.columns, row[offset:], strict=True):
                    sums[row[0]][dimension][column] += Decimal(value)
    return sums


# --- The operations page ----------------------------------------------------------------------------


@dataclass
class OpenLottery:
    lottery: Lottery
    ballots: int


@dataclass
class Overview:
    """Everything the operations page shows, read at once."""

    now: datetime
    open_by_kind: dict[str, int]
    next_closes: list[OpenLottery]
    next_opens: list[Lottery]
    outbox: OutboxBacklog | None
    pipeline: PipelineStatus | None
    lag: ConsumerLag
    dead_letters_open: int
    dead_letters_24h: int
    sms_failed_now: int
    sms_failed_24h: int
    sms_sent_24h: int
    sms_failures: list[Notification]
    reconciliation: Reconciliation
    series: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # parts that could not be read, and why


NEXT_CLOSES = 10


def operations_overview(*, now: datetime | None = None) -> Overview:
    """The platform today at a glance (the operations page). Parts that cannot be read are named in ``problems``."""
    now = now or timezone.now()
    problems: list[str] = []
    open_lotteries = Lottery.objects.filter(state=Lottery.State.OPEN)
    by_kind = dict(open_lotteries.values_list("kind").annotate(n=Count("id")).order_by("kind"))
    closing = list(open_lotteries.order_by("closes_at", "id")[:NEXT_CLOSES])
    valid = dict(
        Ballot.objects.filter(lottery__in=closing, status=Ballot.Status.VALID)
        .values_list("lottery_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    next_opens = list(Lottery.objects.filter(state=Lottery.State.SCHEDULED).order_by("opens_at", "id")[:5])
    try:
        backlog: OutboxBacklog | None = outbox_backlog()
    except DatabaseError as error:
        backlog = None
        problems.append(f"outbox: {type(error).__name__}")
    try:
        pipeline: PipelineStatus | None = pipeline_status()
    except Exception as error:  # Redis may be down: the page says so and shows the rest
        pipeline = None
        problems.append(f"heartbeats: {type(error).__name__}")
    day_ago = now - timedelta(hours=24)
    failed = Notification.objects.filter(state=Notification.State.FAILED)
    start, end = refresh_window(now)  # the hours the table keeps up by itself: older ones heal by a backfill
    report = reconciliation(start=start, end=end, now=now)
    return Overview(
        now=now,
        open_by_kind=by_kind,
        next_closes=[OpenLottery(lottery, valid.get(lottery.pk, 0)) for lottery in closing],
        next_opens=next_opens,
        outbox=backlog,
        pipeline=pipeline,
        lag=consumer_lag(),
        dead_letters_open=DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count(),
        dead_letters_24h=DeadLetter.objects.filter(created_at__gte=day_ago).count(),
        sms_failed_now=failed.count(),
        sms_failed_24h=failed.filter(updated_at__gte=day_ago).count(),
        sms_sent_24h=Notification.objects.filter(state=Notification.State.SENT, sent_at__gte=day_ago).count(),
        sms_failures=list(failed.select_related("lottery").order_by("-updated_at")[:5]),
        reconciliation=report,
        series=hourly_series(hours=48, now=now),
        problems=problems,
    )
