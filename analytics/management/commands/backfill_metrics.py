"""manage.py backfill_metrics --from WHEN --to WHEN: rebuild the business metrics of a range from the sources."""

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from analytics.days import EARLIEST, LATEST, day_start, within_bounds
from analytics.services import backfill_chunks, metrics_recompute, retention_start
from core.fields import parse_iso_date, parse_rfc3339

WHEN = "YYYY-MM-DD (a day's start in LOTTERY_TIME_ZONE) or an RFC 3339 date-time such as 2026-11-22T10:00:00Z"
MAX_CHUNK_DAYS = 3660  # ten years in one transaction: past that, a bigger chunk only makes the transaction longer


def _moment(value: str, name: str) -> datetime:
    outside = CommandError(f"{name} {value!r} lies outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC).")
    day = parse_iso_date(value)
    if day is not None:
        if not EARLIEST.date() <= day < LATEST.date():
            raise outside
        return day_start(day)
    moment = parse_rfc3339(value)
    if moment is None:
        raise CommandError(f"{name} {value!r} is not {WHEN}.")
    if not within_bounds(moment):
        raise outside
    return moment


class Command(BaseCommand):
    help = (
        "Recompute the hourly business metrics, and the daily players of the days they touch, for "
        "[--from, --to) from the source rows. Idempotent: run it again and nothing changes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", required=True, help=f"Inclusive: {WHEN}.")
        parser.add_argument("--to", dest="end", required=True, help=f"Exclusive: {WHEN}; a day means its start.")
        parser.add_argument(
            "--chunk-days", type=int, default=7, help="Days per transaction (default 7); each day is in one."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _moment(options["start"], "--from"), _moment(options["end"], "--to")
        if end <= start:
            raise CommandError(f"--to ({end.isoformat()}) must come after --from ({start.isoformat()}).")
        if end > timezone.now() + timedelta(days=1):
            raise CommandError(f"--to ({end.isoformat()}) is more than a day ahead: nothing has happened there yet.")
        if not 1 <= options["chunk_days"] <= MAX_CHUNK_DAYS:
            raise CommandError(f"--chunk-days must be from 1 to {MAX_CHUNK_DAYS}.")
        kept_from = retention_start(timezone.now())
        if start < day_start(kept_from):
            self.stderr.write(
                f"Note: days before {kept_from} are past METRICS_RETENTION_DAYS: the next purge "
                "deletes them again, and their counters and tallies may be gone already."
            )
        rows = 0
        seconds = 0.0
        for piece_start, piece_end in backfill_chunks(start=start, end=end, days=options["chunk_days"]):
            result = metrics_recompute(start=piece_start, end=piece_end)
            rows += result.rows
            seconds += result.seconds
            self.stdout.write(
                f"{result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC: {result.rows} rows, "
                f"days {result.days[0]} to {result.days[1]} ({result.seconds:.2f} s)"
            )
        self.stdout.write(self.style.SUCCESS(f"Backfilled {rows} hourly rows in {seconds:.2f} s."))
