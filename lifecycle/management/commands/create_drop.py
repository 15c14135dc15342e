from argparse import ArgumentParser, ArgumentTypeError
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from opentelemetry.trace import Span

from core import tracing
from core.errors import ApplicationError
from core.fields import parse_rfc3339
from core.process import started
from lifecycle.services import drop_create
from lotteries.models import TransitionSource


def _moment(value: str) -> datetime:
    """An RFC 3339 date-time, or ``+N`` / ``+Nm`` / ``+Nh``: that many seconds, minutes or hours from now."""
    if value.startswith("+"):
        units = {"s": 1, "m": 60, "h": 3600}
        number, unit = (value[1:-1], value[-1]) if value[-1] in units else (value[1:], "s")
        if number.isdigit():
            return timezone.now() + timedelta(seconds=int(number) * units[unit])
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise ArgumentTypeError(f"{value!r} is neither an RFC 3339 date-time nor +N[s|m|h]")
    return parsed


class Command(BaseCommand):
    help = (
        "Create a drop: a prize with a quantity and an entrance window. It opens at --opens-at (default now; "
        "later: scheduled until then) and closes and is drawn at --closes-at."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--title", required=True)
        parser.add_argument("--prize", required=True, help="The product won.")
        parser.add_argument("--quantity", type=int, required=True, help="Units of the prize, one per winner (Q).")
        parser.add_argument("--opens-at", type=_moment, help="RFC 3339, or +N[s|m|h] from now; default now.")
        parser.add_argument("--closes-at", type=_moment, required=True, help="RFC 3339, or +N[s|m|h] from now.")
        parser.add_argument("--winners", type=int, help="Ranked winners; default the quantity.")
        parser.add_argument("--alternates", type=int, default=0, help="Ranked alternates after them; default 0.")

    def handle(self, *args: Any, **options: Any) -> None:
        started("cli")
        with tracing.span("create_drop", context=tracing.new_trace()) as span:  # a trace of its own
            self._handle(span, **options)

    def _handle(self, span: Span, **options: Any) -> None:
        now = timezone.now()
        try:
            drop = drop_create(
                title=options["title"],
                prize=options["prize"],
                prize_quantity=options["quantity"],
                opens_at=options["opens_at"] or now,
                closes_at=options["closes_at"],
                winners_count=options["winners"],
                alternates_count=options["alternates"],
                source=TransitionSource.COMMAND,
                now=now,
            )
        except ApplicationError as error:
            raise CommandError(error.message) from None
        if span.is_recording():
            span.set_attribute(tracing.LOTTERY_ID, drop.pk)
        self.stdout.write(
            self.style.SUCCESS(
                f"Drop #{drop.pk} {drop.title!r} created, {drop.state}: {drop.prize_quantity} x {drop.prize}, "
                f"{drop.winners_count} winner(s), {drop.alternates_count} alternate(s), "
                f"{drop.opens_at:%Y-%m-%d %H:%M:%S %Z} to {drop.closes_at:%Y-%m-%d %H:%M:%S %Z}; "
                f"seed commitment {drop.seed_commitment}."
            )
        )
