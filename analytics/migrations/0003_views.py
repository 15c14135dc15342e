"""The seed's two views over the hourly table, for SQL readers (Grafana) and the API.

- ``business_metrics_rolling_24h``: per (kind, currency), the sums of the last 24 UTC hours, the
  current one included. Distinct players are not in it: they do not add up over hours.
- ``business_metrics_daily``: per LOTTERY_TIME_ZONE day (the ``day`` column of the hourly rows) and
  (kind, currency), the sums and the day's distinct players (``business_metrics_daily_players``,
  from the source rows); plus a (``*``, ``*``) row per day over every dimension, whose money
  columns are null (currencies do not add up).
"""

from django.db import migrations

ROLLING_24H = """
CREATE VIEW business_metrics_rolling_24h AS
SELECT kind, currency, date_trunc('hour', now(), 'UTC') - interval '23 hours' AS since,
       sum(ballots_accepted)::bigint AS ballots_accepted,
       sum(fraud_rejections)::bigint AS fraud_rejections,
       sum(staked_revenue) AS staked_revenue,
       sum(stakes_received)::bigint AS stakes_received,
       sum(stakes_applied)::bigint AS stakes_applied,
       sum(stakes_duplicate)::bigint AS stakes_duplicate,
       sum(stakes_dead_lettered)::bigint AS stakes_dead_lettered,
       sum(refused_player_banned)::bigint AS refused_player_banned,
       sum(refused_lottery_not_found)::bigint AS refused_lottery_not_found,
       sum(refused_lottery_not_open)::bigint AS refused_lottery_not_open,
       sum(refused_lottery_closed)::bigint AS refused_lottery_closed,
       sum(refused_stake_required)::bigint AS refused_stake_required,
       sum(refused_ballot_limit_reached)::bigint AS refused_ballot_limit_reached,
       sum(refused_idempotency_key_reused)::bigint AS refused_idempotency_key_reused,
       sum(ballots_refused)::bigint AS ballots_refused,
       sum(payouts) AS payouts,
       sum(prizes_awarded)::bigint AS prizes_awarded,
       sum(awards_claimed)::bigint AS awards_claimed,
       sum(awards_forfeited)::bigint AS awards_forfeited,
       sum(draws)::bigint AS draws,
       sum(lotteries_cancelled)::bigint AS lotteries_cancelled,
       sum(refunds) AS refunds,
       sum(sms_sent)::bigint AS sms_sent,
       sum(sms_failed)::bigint AS sms_failed
FROM business_metrics_hourly
WHERE hour >= date_trunc('hour', now(), 'UTC') - interval '23 hours'
GROUP BY kind, currency
"""

DAILY = """
CREATE VIEW business_metrics_daily AS
WITH h AS (
    SELECT day, kind, currency,
           sum(ballots_accepted)::bigint AS ballots_accepted,
           sum(fraud_rejections)::bigint AS fraud_rejections,
           sum(staked_revenue) AS staked_revenue,
           sum(stakes_received)::bigint AS stakes_received,
           sum(stakes_applied)::bigint AS stakes_applied,
           sum(stakes_duplicate)::bigint AS stakes_duplicate,
           sum(stakes_dead_lettered)::bigint AS stakes_dead_lettered,
           sum(refused_player_banned)::bigint AS refused_player_banned,
           sum(refused_lottery_not_found)::bigint AS refused_lottery_not_found,
           sum(refused_lottery_not_open)::bigint AS refused_lottery_not_open,
           sum(refused_lottery_closed)::bigint AS refused_lottery_closed,
           sum(refused_stake_required)::bigint AS refused_stake_required,
           sum(refused_ballot_limit_reached)::bigint AS refused_ballot_limit_reached,
           sum(refused_idempotency_key_reused)::bigint AS refused_idempotency_key_reused,
           sum(ballots_refused)::bigint AS ballots_refused,
           sum(payouts) AS payouts,
           sum(prizes_awarded)::bigint AS prizes_awarded,
           sum(awards_claimed)::bigint AS awards_claimed,
           sum(awards_forfeited)::bigint AS awards_forfeited,
           sum(draws)::bigint AS draws,
           sum(lotteries_cancelled)::bigint AS lotteries_cancelled,
           sum(refunds) AS refunds,
           sum(sms_sent)::bigint AS sms_sent,
           sum(sms_failed)::bigint AS sms_failed
    FROM business_metrics_hourly
    GROUP BY GROUPING SETS ((day, kind, currency), (day))
)
SELECT h.day, coalesce(h.kind, '*') AS kind, coalesce(h.currency, '*') AS currency,
       h.ballots_accepted,
       h.fraud_rejections,
       CASE WHEN h.kind IS NULL THEN NULL ELSE h.staked_revenue END AS staked_revenue,
       h.stakes_received,
       h.stakes_applied,
       h.stakes_duplicate,
       h.stakes_dead_lettered,
       h.refused_player_banned,
       h.refused_lottery_not_found,
       h.refused_lottery_not_open,
       h.refused_lottery_closed,
       h.refused_stake_required,
       h.refused_ballot_limit_reached,
       h.refused_idempotency_key_reused,
       h.ballots_refused,
       CASE WHEN h.kind IS NULL THEN NULL ELSE h.payouts END AS payouts,
       h.prizes_awarded,
       h.awards_claimed,
       h.awards_forfeited,
       h.draws,
       h.lotteries_cancelled,
       CASE WHEN h.kind IS NULL THEN NULL ELSE h.refunds END AS refunds,
       h.sms_sent,
       h.sms_failed,
       coalesce(p.unique_players, 0) AS unique_players
FROM h
LEFT JOIN business_metrics_daily_players p
       ON p.day = h.day AND p.kind = coalesce(h.kind, '*') AND p.currency = coalesce(h.currency, '*')
"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0002_source_time_indexes")]

    operations = [
        migrations.RunSQL(ROLLING_24H, "DROP VIEW IF EXISTS business_metrics_rolling_24h"),
        migrations.RunSQL(DAILY, "DROP VIEW IF EXISTS business_metrics_daily"),
    ]
