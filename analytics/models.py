"""Business metrics: one row per UTC hour and dimension, and each day's unique players.

Every column is recomputed (``analytics.services.metrics_recompute``), never
incremented here: from the source rows where they exist (ballots, stakes,
awards, draws, transitions, SMS), from the counters kept in the changes' own
transactions where they do not (``outbox.ConsumerHourCounter``: stakes
received, duplicate, dead-lettered) and from the per-process tallies of what
stores nothing (``core.HourlyTally``: refused ballots). docs/business-metrics.md
says which column comes from where.

The dimension is the lottery's ``kind`` and ``currency`` (a pool's; empty for
daily lotteries and drops). Two exceptions: a stake message is counted before
it reaches a pool, so the stake flow (received, applied, duplicate,
dead-lettered) sits on the ``(pool, "")`` row; and a ballot for a lottery that
does not exist is refused on the ``("", "")`` row. Money columns are in the
row's currency, to four places.

The tables are plain, for SQL readers such as Grafana's PostgreSQL data
source: ``business_metrics_hourly`` (``hour`` timestamptz, ``day`` the date
in LOTTERY_TIME_ZONE the hour starts in), ``business_metrics_daily_players``,
and the views ``business_metrics_rolling_24h`` and ``business_metrics_daily``
(migration 0003; 0005 redefines the daily one).
"""

from django.db import models
from django.db.models import F

from entries.services import TALLIED_REFUSALS

VIEW_BUSINESS_METRICS = "analytics.view_business_metrics"

# The refused-ballot columns, one per code that stores no row; ``duplicate_entry`` is ``fraud_rejections``.
REFUSED_COLUMNS = {error.code: f"refused_{error.code}" for error in TALLIED_REFUSALS}
ALL_KINDS = "*"  # the daily players row of every kind and currency together


def _count() -> models.BigIntegerField[int, int]:
    return models.BigIntegerField(default=0, db_default=0)


def _money() -> models.DecimalField[object, object]:
    return models.DecimalField(max_digits=20, decimal_places=4, default=0, db_default=0)


class HourlyMetric(models.Model):
    hour = models.DateTimeField(help_text="The start of the UTC hour.")
    day = models.DateField(help_text="The date, in LOTTERY_TIME_ZONE, that the hour starts in.")
    kind = models.CharField(max_length=8, blank=True, help_text="daily, drop, pool; empty: no such lottery.")
    currency = models.CharField(max_length=3, blank=True, help_text="A pool's currency; empty for the others.")

    ballots_accepted = _count()
    fraud_rejections = _count()
    refused_player_banned = _count()
    refused_lottery_not_found = _count()
    refused_lottery_not_open = _count()
    refused_lottery_closed = _count()
    refused_stake_required = _count()
    refused_ballot_limit_reached = _count()
    refused_idempotency_key_reused = _count()
    ballots_refused = models.GeneratedField(
        expression=F("fraud_rejections")
        + F("refused_player_banned")
        + F("refused_lottery_not_found")
        + F("refused_lottery_not_open")
        + F("refused_lottery_closed")
        + F("refused_stake_required")
        + F("refused_ballot_limit_reached")
        + F("refused_idempotency_key_reused"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    unique_players = _count()

    stakes_received = _count()
    stakes_applied = _count()
    stakes_duplicate = _count()
    stakes_dead_lettered = _count()
    staked_revenue = _money()

    payouts = _money()
    prizes_awarded = _count()
    awards_claimed = _count()
    awards_forfeited = _count()

    draws = _count()
    lotteries_cancelled = _count()
    refunds = _money()

    sms_sent = _count()
    sms_failed = _count()

    computed_at = models.DateTimeField()

    class Meta:
        db_table = "business_metrics_hourly"
        ordering = ["-hour", "kind", "currency"]
        permissions = [
            ("view_business_metrics", "Can read the business metrics, their reconciliation and the operations page")
        ]
        constraints = [
            models.UniqueConstraint(name="business_metrics_hour_dimension", fields=["hour", "kind", "currency"]),
        ]
        indexes = [models.Index(name="business_metrics_by_day", fields=["day", "kind", "currency"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.kind or '-'} {self.currency or '-'}"


class DailyPlayers(models.Model):
    """Distinct players of a LOTTERY_TIME_ZONE day, by dimension and (``*``, ``*``) over all: from the source rows,
    never a sum of hourly uniques (a player of two hours is one player of the day)."""

    day = models.DateField()
    kind = models.CharField(max_length=8, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    unique_players = _count()
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "business_metrics_daily_players"
        ordering = ["-day", "kind", "currency"]
        constraints = [
            models.UniqueConstraint(name="business_metrics_daily_dimension", fields=["day", "kind", "currency"])
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind or '-'} {self.currency or '-'}: {self.unique_players}"


class DailySummary(models.Model):
    """A row of the view ``business_metrics_daily`` (migration 0003): read-only, for the API.

    A day's sums by dimension, and over every dimension (kind and currency
    ``*``, whose money columns are null: currencies do not add up), with the
    day's distinct players from ``DailyPlayers``. ``day`` stands in for a key
    (the view has none); rows are told apart by (day, kind, currency).
    """

    day = models.DateField(primary_key=True)
    kind = models.CharField(max_length=8)
    currency = models.CharField(max_length=3)
    ballots_accepted = models.BigIntegerField()
    fraud_rejections = models.BigIntegerField()
    refused_player_banned = models.BigIntegerField()
    refused_lottery_not_found = models.BigIntegerField()
    refused_lottery_not_open = models.BigIntegerField()
    refused_lottery_closed = models.BigIntegerField()
    refused_stake_required = models.BigIntegerField()
    refused_ballot_limit_reached = models.BigIntegerField()
    refused_idempotency_key_reused = models.BigIntegerField()
    ballots_refused = models.BigIntegerField()
    unique_players = models.BigIntegerField()
    stakes_received = models.BigIntegerField()
    stakes_applied = models.BigIntegerField()
    stakes_duplicate = models.BigIntegerField()
    stakes_dead_lettered = models.BigIntegerField()
    staked_revenue = models.DecimalField(max_digits=24, decimal_places=4, null=True)
    payouts = models.DecimalField(max_digits=24, decimal_places=4, null=True)
    prizes_awarded = models.BigIntegerField()
    awards_claimed = models.BigIntegerField()
    awards_forfeited = models.BigIntegerField()
    draws = models.BigIntegerField()
    lotteries_cancelled = models.BigIntegerField()
    refunds = models.DecimalField(max_digits=24, decimal_places=4, null=True)
    sms_sent = models.BigIntegerField()
    sms_failed = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "business_metrics_daily"
        ordering = ["-day", "kind", "currency"]

    def __str__(self) -> str:
        return f"{self.day} {self.kind or '-'} {self.currency or '-'}"
