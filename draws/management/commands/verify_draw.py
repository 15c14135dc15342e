from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from draws.selectors import draw_get
from draws.services import draw_verify


class Command(BaseCommand):
    help = "Recompute a draw from its seed and the lottery's valid ballots, and say whether it matches the record."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("draw_id", type=int, metavar="ID")

    def handle(self, *args: Any, **options: Any) -> None:
        draw = draw_get(draw_id=options["draw_id"])
        if draw is None:
            raise CommandError(f"No draw with id {options['draw_id']}.")
        result = draw_verify(draw=draw)

        def line(label: str, ok: bool, detail: str) -> None:
            mark = self.style.SUCCESS("ok      ") if ok else self.style.ERROR("MISMATCH")
            self.stdout.write(f"{mark} {label}: {detail}")

        self.stdout.write(
            f"Draw {draw.pk} of lottery {draw.lottery_id} ({draw.algorithm_version}), {draw.entries_count} entries"
        )
        line("commitment", result.commitment_matches, f"sha256(seed) = {draw.seed_commitment}")
        line(
            "entries digest",
            result.entries_digest_matches,
            f"recorded {draw.entries_digest}, recomputed {result.recomputed_entries_digest}",
        )
        line(
            "winners",
            result.winners_match,
            f"recorded {list(draw.winning_ballot_ids)}, recomputed {result.recomputed_winning_ballot_ids}",
        )
        line(
            "alternates",
            result.alternates_match,
            f"recorded {list(draw.alternate_ballot_ids)}, recomputed {result.recomputed_alternate_ballot_ids}",
        )
        if not result.matches:
            raise CommandError("The draw does NOT verify.")
        self.stdout.write(self.style.SUCCESS("The draw verifies."))
