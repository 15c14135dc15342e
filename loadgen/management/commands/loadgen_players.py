"""manage.py loadgen_players: provision the load generator's players and their tokens, in bulk."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from loadgen import population
from loadgen.services import players_provision


class Command(BaseCommand):
    help = (
        "Create the load generator's players (loadgen-p00001...) and their cheating twins (loadgen-c00001...) "
        "with API tokens, those missing; the same players serve every run (POST /api/v1/loadgen/players does "
        "the same over HTTP)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=1000, help=f"Honest players, 1 to {population.MAX_PLAYERS}.")

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["count"]
        if not 1 <= count <= population.MAX_PLAYERS:
            raise CommandError(f"--count must be 1 to {population.MAX_PLAYERS}")
        players = players_provision(count=count, actor=None)
        twins = sum(1 for player in players if player.twin_of)
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(players) - twins} load generator players and {twins} twins are ready, with tokens."
            )
        )
