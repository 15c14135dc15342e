from argparse import ArgumentParser, ArgumentTypeError
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import tracing
from core.errors import ApplicationError
from core.process import started
from lifecycle.services import CloseStep, close_step, lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.selectors import lotteries_due_ids, lotteries_of_day_ids

DRY_RUN_WORDS = {
    CloseStep.CLOSE_AND_DRAW: "would close and draw",
    CloseStep.DRAW: "would draw",
    CloseStep.REFUSE_NOT_DUE: "would refuse (window not ended; --force to close)",
    CloseStep.REFUSE_NOT_OPEN: "would refuse (scheduled: its window has not started)",
    CloseStep.NOTHING: "nothing to do",
}


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD") from None


class Command(BaseCommand):
    help = (
        "Close and draw lotteries: every lottery whose entrance window has ended (the default, as beat does), "
        "the lotteries of one date (--date), or one lottery (--lottery)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--date", type=_date, help="The daily lottery of this date (YYYY-MM-DD) and drops ending that day."
        )
        which.add_argument("--lottery", type=int, metavar="ID", help="One lottery, by id.")
        parser.add_argument(
            "--force", action="store_true", help="Close even before the entrance window ends (recorded)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Show what would be closed; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        started("cli")
        # A trace of its own, through every close, draw, award, event and SMS it causes.
        which = {tracing.LOTTERY_ID: options["lottery"]} if options["lottery"] is not None else {}
        with tracing.span("close_lotteries", which, context=tracing.new_trace()):
            self._handle(**options)

    def _handle(self, **options: Any) -> None:
        if options["lottery"] is not None:
            ids = [options["lottery"]]
        elif options["date"] is not None:
            ids = lotteries_of_day_ids(day=options["date"])
        else:
            ids = lotteries_due_ids(now=timezone.now())
        if not ids:
            self.stdout.write("Nothing to close.")
            return

        if options["dry_run"]:
            lotteries = {lottery.pk: lottery for lottery in Lottery.objects.filter(pk__in=ids)}
            now = timezone.now()
            for lottery_id in ids:
                lottery = lotteries.get(lottery_id)
                if lottery is None:
                    raise CommandError(f"No lottery with id {lottery_id}.")
                step = close_step(lottery, now=now, force=options["force"])
                action = DRY_RUN_WORDS[step]
                closes = f"{lottery.closes_at:%Y-%m-%d %H:%M %Z}"
                self.stdout.write(f"#{lottery.pk} {lottery.title} [{lottery.state}, closes {closes}]: {action}")
            return

        failures = 0
        for lottery_id in ids:
            try:
                outcome = lottery_close(lottery_id=lottery_id, source=TransitionSource.COMMAND, force=options["force"])
            except ApplicationError as error:
                failures += 1
                self.stderr.write(f"#{lottery_id}: {error.message}")
                continue
            lottery = outcome.lottery
            if not outcome.changed:
                self.stdout.write(f"#{lottery.pk} {lottery.title}: already {lottery.state}, unchanged.")
            elif outcome.draw is not None:
                winners = ", ".join(map(str, outcome.draw.winning_ballot_ids))
                self.stdout.write(
                    self.style.SUCCESS(
                        f"#{lottery.pk} {lottery.title}: drawn (draw {outcome.draw.pk}, winning ballots {winners})."
                    )
                )
            else:
                self.stdout.write(f"#{lottery.pk} {lottery.title}: cancelled, no valid ballots.")
        if failures:
            raise CommandError(f"{failures} lottery(ies) could not be closed.")
