"""What each column of the hourly table is, as SQL over its source: one SELECT per measure group.

Each group's SELECT yields rows of (hour, kind, currency, its columns...) for
the hours in ``[%(start)s, %(end)s)`` (``ENTRIES`` also the days': see there); ``analytics.services`` upserts them,
and ``analytics.selectors`` runs the same SELECTs to check the table against
its sources. One text for both, so the check and the table cannot drift.

Hours are UTC, whatever the session's zone: ``date_bin('1 hour', t, TIMESTAMPTZ 'epoch')``, the
same hour as ``date_trunc('hour', t, 'UTC')`` by plain arithmetic on the instant, where the latter
converts each row through the zone database (about a second per million rows here). For the same
reason ``ENTRIES`` finds each row's LOTTERY_TIME_ZONE day by a binary search of the range's day
starts (``width_bucket``), not with ``AT TIME ZONE`` per row.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from analytics.days import day_start, days_between
from core.db import sql
from core.models import HourlyTally
from draws.models import Draw, LotteryAward
from entries.models import Ballot
from entries.services import BALLOT_REFUSED, TALLIED_REFUSALS
from lotteries.models import Lottery, LotteryTransition
from notifications.models import Notification
from outbox.models import ConsumerHourCounter
from pools.consumer import CONSUMER as STAKES_CONSUMER
from pools.models import Stake

_UTC_HOUR = re.compile(r"\bUTC_HOUR\((\w+\.\w+)\)")
# From 1970-01-01 00:00 UTC (the epoch): the bins are the UTC hours.
_UTC_HOUR_SQL = r"date_bin('1 hour', \1, TIMESTAMPTZ 'epoch')"


def _sql(template: str, **names: Any) -> str:
    """``core.db.sql``, with ``UTC_HOUR(t.column)`` written out as the hour's SQL (see the module's doc)."""
    return sql(_UTC_HOUR.sub(_UTC_HOUR_SQL, template), **names)


@dataclass(frozen=True)
class Group:
    """A measure group: its columns, and the SELECT of (hour, kind, currency, *columns) from its sources."""

    name: str
    columns: tuple[str, ...]
    select: str
    source: str  # for people: where the numbers come from


# Ballots (every stored one: valid and void were accepted, rejected ones are the fraud rejections)
# and stakes, together: a player who entered and staked in one hour is one player of it. One scan
# serves the hours and the days: GROUPING SETS over (day, kind, currency, hour) and its rollups, so
# the distinct players of each hour, of each day by dimension and of each day over all (level 0, 2
# and 3) come from one sort. A day's distinct players are counted over its rows, never summed.
ENTRIES = Group(
    name="entries",
    columns=("ballots_accepted", "fraud_rejections", "unique_players", "staked_revenue"),
    select=_sql(
        """
SELECT e.hour, (%(days)s::date[])[width_bucket(e.hour, %(day_starts)s::timestamptz[])] AS day,
       l.kind, l.currency, grouping(e.hour, l.kind) AS level,
       count(*) FILTER (WHERE e.ballot AND e.accepted) AS ballots_accepted,
       count(*) FILTER (WHERE e.ballot AND NOT e.accepted) AS fraud_rejections,
       count(DISTINCT e.player_id) FILTER (WHERE e.accepted) AS unique_players,
       coalesce(sum(e.amount), 0) AS staked_revenue
FROM (
    SELECT UTC_HOUR(b.created_at) AS hour, b.lottery_id, b.player_id,
           b.status <> {rejected} AS accepted, TRUE AS ballot, NULL::numeric AS amount
    FROM {Ballot} b
    WHERE b.created_at >= %(start)s AND b.created_at < %(end)s
    UNION ALL
    SELECT UTC_HOUR(s.created_at), s.lottery_id, s.player_id, TRUE, FALSE, s.amount
    FROM {Stake} s
    WHERE s.created_at >= %(start)s AND s.created_at < %(end)s
) e
JOIN {Lottery} l ON l.id = e.lottery_id
GROUP BY GROUPING SETS ((2, l.kind, l.currency, e.hour), (2, l.kind, l.currency), (2))
""",
        Ballot=Ballot,
        Stake=Stake,
        Lottery=Lottery,
        rejected=Ballot.Status.REJECTED,
    ),
    source="entries_ballot (created_at) and entries_stake (created_at)",
)
HOUR_LEVEL, DAY_LEVEL, ALL_DAY_LEVEL = 0, 2, 3  # ENTRIES' grouping(hour, kind) per grouping set (hour is bit 2)

# The stake consumer's messages, before they reach a pool: the (pool, "") row. Applied ones are
# the stakes stored; received, duplicate and dead-lettered are the hourly counters the consumer
# moves in its transaction (a duplicate leaves no row; a replayed dead letter may be purged).
STAKE_FLOW = Group(
    name="stake_flow",
    columns=("stakes_received", "stakes_applied", "stakes_duplicate", "stakes_dead_lettered"),
    select=_sql(
        """
SELECT f.hour, {pool}::varchar, ''::varchar,
       sum(f.received)::bigint, sum(f.applied)::bigint, sum(f.duplicate)::bigint, sum(f.dead_lettered)::bigint
FROM (
    SELECT c.hour, c.received, 0 AS applied, c.duplicate, c.dead_lettered
    FROM {ConsumerHourCounter} c
    WHERE c.consumer = %(consumer)s AND c.hour >= %(start)s AND c.hour < %(end)s
    UNION ALL
    SELECT UTC_HOUR(s.created_at), 0, count(*), 0, 0
    FROM {Stake} s
    WHERE s.created_at >= %(start)s AND s.created_at < %(end)s
    GROUP BY 1
) f
GROUP BY 1
""",
        ConsumerHourCounter=ConsumerHourCounter,
        Stake=Stake,
        pool=Lottery.Kind.POOL,
    ),
    source="entries_stake (applied) and outbox_consumerhourcounter (received, duplicate, dead-lettered)",
)

_REFUSED = [f"refused_{error.code}" for error in TALLIED_REFUSALS]

# Refused ballots store nothing: their tallies, by the lottery's kind ("" when there is no such lottery).
REFUSALS = Group(
    name="refusals",
    columns=tuple(_REFUSED),
    select=_sql(
        """
SELECT t.hour, t.dimension, ''::varchar, {sums}
FROM {HourlyTally} t
WHERE t.measure = %(refused)s AND t.hour >= %(start)s AND t.hour < %(end)s
GROUP BY 1, 2
""".replace(
            "{sums}",
            ", ".join(
                f"coalesce(sum(t.count) FILTER (WHERE t.code = '{error.code}'), 0)::bigint"
                for error in TALLIED_REFUSALS
            ),
        ),
        HourlyTally=HourlyTally,
    ),
    source="core_hourlytally (measure ballot_refused), tallied per process",
)

# Awards: awarded (and paid: win_sum) when created, claimed when claimed, forfeited when forfeited.
AWARDS = Group(
    name="awards",
    columns=("payouts", "prizes_awarded", "awards_claimed", "awards_forfeited"),
    select=_sql(
        """
SELECT a.hour, l.kind, l.currency,
       coalesce(sum(a.win_sum), 0), count(*) FILTER (WHERE a.event = 'awarded'),
       count(*) FILTER (WHERE a.event = 'claimed'), count(*) FILTER (WHERE a.event = 'forfeited')
FROM (
    SELECT UTC_HOUR(w.created_at) AS hour, w.lottery_id, 'awarded' AS event, w.win_sum
    FROM {LotteryAward} w WHERE w.created_at >= %(start)s AND w.created_at < %(end)s
    UNION ALL
    SELECT UTC_HOUR(w.claimed_at), w.lottery_id, 'claimed', NULL
    FROM {LotteryAward} w WHERE w.claimed_at >= %(start)s AND w.claimed_at < %(end)s
    UNION ALL
    SELECT UTC_HOUR(w.forfeited_at), w.lottery_id, 'forfeited', NULL
    FROM {LotteryAward} w WHERE w.forfeited_at >= %(start)s AND w.forfeited_at < %(end)s
) a
JOIN {Lottery} l ON l.id = a.lottery_id
GROUP BY 1, 2, 3
""",
        LotteryAward=LotteryAward,
        Lottery=Lottery,
    ),
    source="draws_lotteryaward (created_at, claimed_at, forfeited_at)",
)

# Draws when drawn; cancellations when the lottery entered ``cancelled``, refunding its stakes (pools).
OUTCOMES = Group(
    name="outcomes",
    columns=("draws", "lotteries_cancelled", "refunds"),
    select=_sql(
        """
SELECT o.hour, l.kind, l.currency,
       count(*) FILTER (WHERE o.drawn), count(*) FILTER (WHERE NOT o.drawn), coalesce(sum(o.refund), 0)
FROM (
    SELECT UTC_HOUR(d.drawn_at) AS hour, d.lottery_id, TRUE AS drawn, NULL::numeric AS refund
    FROM {Draw} d WHERE d.drawn_at >= %(start)s AND d.drawn_at < %(end)s
    UNION ALL
    SELECT UTC_HOUR(t.created_at), t.lottery_id, FALSE,
           (SELECT sum(s.amount) FROM {Stake} s WHERE s.lottery_id = t.lottery_id)
    FROM {LotteryTransition} t
    WHERE t.to_state = {cancelled} AND t.created_at >= %(start)s AND t.created_at < %(end)s
) o
JOIN {Lottery} l ON l.id = o.lottery_id
GROUP BY 1, 2, 3
""",
        Draw=Draw,
        LotteryTransition=LotteryTransition,
        Stake=Stake,
        Lottery=Lottery,
        cancelled=Lottery.State.CANCELLED,
    ),
    source="draws_draw (drawn_at), lotteries_lotterytransition (to cancelled) and the cancelled pools' stakes",
)

# SMS: sent when sent; failed when they last failed (a failure sent again later moves to the hour it is sent in).
SMS = Group(
    name="sms",
    columns=("sms_sent", "sms_failed"),
    select=_sql(
        """
SELECT n.hour, l.kind, l.currency, count(*) FILTER (WHERE n.sent), count(*) FILTER (WHERE NOT n.sent)
FROM (
    SELECT UTC_HOUR(m.sent_at) AS hour, m.lottery_id, TRUE AS sent
    FROM {Notification} m WHERE m.state = {sent} AND m.sent_at >= %(start)s AND m.sent_at < %(end)s
    UNION ALL
    SELECT UTC_HOUR(m.updated_at), m.lottery_id, FALSE
    FROM {Notification} m WHERE m.state = {failed} AND m.updated_at >= %(start)s AND m.updated_at < %(end)s
) n
JOIN {Lottery} l ON l.id = n.lottery_id
GROUP BY 1, 2, 3
""",
        Notification=Notification,
        Lottery=Lottery,
        sent=Notification.State.SENT,
        failed=Notification.State.FAILED,
    ),
    source="notifications_notification (sent_at of the sent, updated_at of the failed)",
)

GROUPS = (ENTRIES, STAKE_FLOW, REFUSALS, AWARDS, OUTCOMES, SMS)
HOURLY_GROUPS = GROUPS[1:]  # those whose SELECT yields (hour, kind, currency, *columns) for the hours only
COLUMNS = tuple(column for group in GROUPS for column in group.columns)
MONEY_COLUMNS = ("staked_revenue", "payouts", "refunds")


def parameters(*, start: datetime, end: datetime, tz: str) -> dict[str, Any]:
    """The parameters every group's SELECT takes, for the hours ``[start, end)`` and their days in ``tz``."""
    zone = ZoneInfo(tz)
    days = days_between(start, end, zone)
    return {
        "start": start,
        "end": end,
        "tz": tz,
        "consumer": STAKES_CONSUMER,
        "refused": BALLOT_REFUSED,
        "days": days,
        "day_starts": [day_start(day, zone) for day in days],
    }
