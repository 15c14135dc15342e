"""The business metrics' calendar: UTC hours, and the LOTTERY_TIME_ZONE days they make up.

A day is the UTC hours whose start falls in it: 24 of them, or 23 or 25
around a DST change; in a zone whose offset is not whole hours (UTC+05:30),
a day starts at the first whole UTC hour after its local midnight.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from core.tallies import hour_of
from lotteries.services import lottery_zone

HOUR = timedelta(hours=1)
# The moments the metrics count around: hours and days stay well inside what a datetime can hold.
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def within_bounds(moment: datetime) -> bool:
    """Whether ``moment`` lies in ``[EARLIEST, LATEST]`` (False where converting it to UTC overflows)."""
    try:
        return EARLIEST <= moment.astimezone(UTC) <= LATEST
    except OverflowError:
        return False


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_of(moment)
    return floor if floor == moment.astimezone(UTC) else floor + HOUR


def day_of(hour: datetime, tz: ZoneInfo | None = None) -> date:
    """The day an hour belongs to: the one its start falls in (LOTTERY_TIME_ZONE unless ``tz``)."""
    return hour.astimezone(tz or lottery_zone()).date()


def day_start(day: date, tz: ZoneInfo | None = None) -> datetime:
    """The first UTC hour of a day: the first whose start falls in it."""
    return hour_ceil(datetime.combine(day, datetime.min.time(), tzinfo=tz or lottery_zone()))


def day_hours(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a LOTTERY_TIME_ZONE day in UTC hours (23, 24 or 25 of them, around a DST change)."""
    return day_start(day), day_start(day + timedelta(days=1))


def days_between(start: datetime, end: datetime, tz: ZoneInfo | None = None) -> list[date]:
    """Every day the hours ``[start, end)`` touch, in order."""
    first, last = day_of(start, tz), day_of(end - HOUR, tz)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def refresh_window(now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of the hours beat's refresh recomputes at ``now``: METRICS_WINDOW_HOURS, this one included,
    and every earlier hour whose recompute is not yet due (``recompute_due``).

    Without the latter a window of one hour, or a refresh period longer than the window, would
    leave what an hour took in after its last refresh uncounted: at 10:02, the window [10:00, 11:00)
    misses the ballots of 9:58. Also what the reconciliation checks by default: the hours the table
    keeps up by itself.
    """
    end = hour_of(now) + HOUR
    not_yet_due = hour_of(now - 2 * timedelta(seconds=settings.METRICS_REFRESH_SECONDS))
    return min(end - settings.METRICS_WINDOW_HOURS * HOUR, not_yet_due), end


def recompute_due(hour: datetime) -> datetime:
    """When a refresh must have recomputed ``hour`` since it ended: two refresh periods after its end."""
    return hour + HOUR + 2 * timedelta(seconds=settings.METRICS_REFRESH_SECONDS)
