"""manage.py loadgen: the first seed's anomaly generator, played against a running platform over HTTP."""

import re
import signal
import sys
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from loadgen import plan, population, switches
from loadgen.client.progress import Display
from loadgen.client.runner import Generator, Options

_UNITS = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}


def _minutes(value: str) -> float:
    """A simulated duration: ``90m``, ``6h``, ``1d``, ``45s`` (a bare number is minutes)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)", value.strip())
    if match is None or float(match[1]) <= 0:
        raise ArgumentTypeError(f"{value!r} is not a duration such as 90m, 6h or 1d")
    return float(match[1]) * _UNITS[match[2] or "m"]


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ArgumentTypeError(f"{value} must be above 0")
    return number


def _pin(value: str) -> tuple[str, Any]:
    name, sep, raw = value.partition("=")
    if not sep:
        raise ArgumentTypeError(f"{value!r}: write NAME=VALUE")
    try:
        return name.strip(), switches.parse(name.strip(), raw)
    except ValueError as error:
        raise ArgumentTypeError(str(error)) from None


def _token(purpose: str) -> str:
    values = settings.INTERNAL_TOKENS.get(purpose, ())
    return values[0] if values else ""


class Command(BaseCommand):
    help = (
        "Play the first seed's traffic against a running platform, over its HTTP API only: drops at random "
        "intervals, entries from a provisioned population with a share of cheaters, low participation, traffic "
        "bursts, stats 506 bursts; the anomalies' numbers are the chaos switches (admin) unless --set pins them. "
        "Every injected anomaly goes to the ground truth (GET /api/v1/loadgen/anomalies)."
    )
    requires_system_checks: list[str] = []  # a client: it needs no database

    def add_arguments(self, parser: ArgumentParser) -> None:
        shape = plan.Shape()
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="The platform to drive (only it).")
        parser.add_argument("--time-scale", type=_positive, default=1.0, help="Simulated seconds per real second.")
        parser.add_argument("--seed", help="Replays the same run (printed in the summary when not given).")
        parser.add_argument(
            "--duration", type=_minutes, help="Simulated time to run: 90m, 6h, 1d; default: until stopped."
        )
        parser.add_argument("--max-drops", type=int, help="Stop after creating this many drops.")
        parser.add_argument("--players", type=int, default=shape.players, help="Honest players (each has a twin).")
        parser.add_argument("--entries-min", type=int, default=shape.entries_min, help="Entries of a drop, fewest.")
        parser.add_argument("--entries-max", type=int, default=shape.entries_max, help="Entries of a drop, most.")
        parser.add_argument(
            "--window-min", type=_positive, default=shape.window_min_minutes, help="Minutes, simulated."
        )
        parser.add_argument(
            "--window-max", type=_positive, default=shape.window_max_minutes, help="Minutes, simulated."
        )
        parser.add_argument(
            "--set", dest="pins", type=_pin, action="append", default=[], metavar="SWITCH=VALUE",
            help=f"Pin a chaos switch for this run, over admin's value ({', '.join(switches.SWITCHES)}).",
        )  # fmt: skip
        parser.add_argument("--concurrency", type=int, default=32, help="Entries in flight at most.")
        parser.add_argument("--stats-every", type=float, default=30.0, help="Read the stats every N s (0: never).")
        parser.add_argument("--switch-poll", type=_positive, default=2.0, help="Read the switches every N s.")
        parser.add_argument("--drain", type=float, default=30.0, help="After the last window, wait N s for draws.")
        parser.add_argument("--token", default="", help="A staff member's API token, instead of internal tokens.")
        parser.add_argument("--drops-token", default=_token("drops"), help="Default: INTERNAL_DROPS_TOKEN.")
        parser.add_argument("--loadgen-token", default=_token("loadgen"), help="Default: INTERNAL_LOADGEN_TOKEN.")
        parser.add_argument("--run-id", help="The run's name in the ground truth (default: start time and seed).")
        parser.add_argument(
            "--report-every", type=_positive, default=10.0, help="Without a terminal: a line every N s."
        )
        parser.add_argument("--wait-for-server", type=float, default=0.0, help="Wait up to N s for /health/live.")
        parser.add_argument("--json", action="store_true", help="End with the summary as one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        shape = plan.Shape(
            entries_min=options["entries_min"],
            entries_max=options["entries_max"],
            window_min_minutes=options["window_min"],
            window_max_minutes=options["window_max"],
            players=options["players"],
        )
        if not 1 <= shape.players <= population.MAX_PLAYERS:
            raise CommandError(f"--players must be 1 to {population.MAX_PLAYERS}")
        if not 1 <= shape.entries_min <= shape.entries_max <= shape.players:
            raise CommandError("entries per drop: 1 <= --entries-min <= --entries-max <= --players")
        if options["concurrency"] < 1 or (options["max_drops"] is not None and options["max_drops"] < 1):
            raise CommandError("--concurrency and --max-drops must be at least 1")
        if not options["token"] and not (options["drops_token"] and options["loadgen_token"]):
            raise CommandError(
                "credentials: --token (staff with create_drop, the loadgen permissions and view_livesetting), or "
                "the drops and loadgen internal tokens (INTERNAL_DROPS_TOKEN, INTERNAL_LOADGEN_TOKEN)"
            )
        generator_options = Options(
            base_url=options["base_url"],
            time_scale=options["time_scale"],
            seed=options["seed"],
            duration_minutes=options["duration"],
            max_drops=options["max_drops"],
            shape=shape,
            pinned=dict(options["pins"]),
            concurrency=options["concurrency"],
            switch_poll_seconds=options["switch_poll"],
            stats_every_seconds=max(0.0, options["stats_every"]),
            drain_seconds=max(0.0, options["drain"]),
            staff_token=options["token"],
            drops_token=options["drops_token"],
            loadgen_token=options["loadgen_token"],
            run_id=options["run_id"],
        )
        display = Display(self.stdout, tty=sys.stdout.isatty(), every=options["report_every"], as_json=options["json"])
        try:
            generator = Generator(generator_options, show=display)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if options["wait_for_server"] > 0 and not generator.api.wait_until_live(options["wait_for_server"]):
            raise CommandError(
                f"{options['base_url']} did not answer /health/live within {options['wait_for_server']} s"
            )
        signal.signal(signal.SIGTERM, lambda *_: generator.stop())
        self.stdout.write(f"load generator run {generator.run_id} (seed {generator.seed}) -> {options['base_url']}")
        try:
            summary = generator.run()
        except KeyboardInterrupt:
            generator.stop()
            summary = generator.summary()
        except RuntimeError as error:
            raise CommandError(str(error)) from None
        display.final(summary)
