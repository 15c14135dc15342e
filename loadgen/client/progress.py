"""What a running generator shows: a live status line on a terminal (rich), a plain summary line now and
then without one, and the final summary either way."""

import json
import time
from typing import IO, Any, cast

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadgen.client.runner import Generator

_SHORT = {
    "anomalous_low_participation": "low",
    "anomalous_traffic_burst": "burst",
    "anomalous_stats_endpoint_506": "506",
    "fraudulent_entry": "fraud",
}


def status_line(generator: Generator) -> str:
    """Drops created, open and drawn; entries sent, accepted, refused by code; anomalies; the simulated clock."""
    t = generator.totals
    with t.lock:
        refused = ", ".join(f"{code} {n}" for code, n in t.refused.most_common()) or "none"
        anomalies = ", ".join(f"{_SHORT.get(kind, kind)} {n}" for kind, n in sorted(t.anomalies.items())) or "none"
        return (
            f"sim {generator.simulated_now():%Y-%m-%d %H:%M} | drops {t.drops_created} created, "
            f"{t.drops_open} open, {t.drops_final['drawn']} drawn | entries {t.entries_sent} sent, "
            f"{t.entries_accepted} accepted, refused: {refused} | anomalies: {anomalies}"
        )


def summary_text(summary: dict[str, Any]) -> str:
    drops, entries, rate, cpu = summary["drops"], summary["entries"], summary["rate"], summary["cpu"]
    refused = ", ".join(f"{code} {n}" for code, n in sorted(entries["refused"].items())) or "none"
    anomalies = ", ".join(f"{kind} {n}" for kind, n in sorted(summary["anomalies"].items())) or "none"
    return "\n".join(
        [
            f"load generator run {summary['run']} (seed {summary['seed']}) against {summary['base_url']}, "
            f"time scale {summary['time_scale']:g}: {summary['simulated_minutes']} simulated minutes "
            f"in {summary['wall_seconds']} s",
            f"  drops: {drops['created']} created, {drops['drawn']} drawn, {drops['cancelled']} cancelled, "
            f"{drops['open']} not drawn yet, {drops['failed']} failed to create",
            f"  entries: {entries['sent']} sent of {entries['planned']} planned, {entries['accepted']} accepted; "
            f"refused: {refused}",
            f"  cheats: {summary['cheats']['sent']} sent, {summary['cheats']['refused_duplicate_entry']} refused "
            f"duplicate_entry, {summary['cheats']['skipped']} not sent (their original was refused)",
            f"  anomalies recorded: {anomalies}; stats 506 bursts refused by the server: "
            f"{summary['stats']['bursts_refused']}",
            f"  rate: {rate['requested_per_second']} entries/s requested, {rate['achieved_per_second']} achieved, "
            f"lag p99 {rate['lag_p99_ms']} ms; generator CPU {cpu['seconds']} s ({cpu['share_of_a_core']} of a core)",
        ]
    )


class Display:
    """``show`` for the generator: rich's live line on a terminal, else a plain line every ``every`` seconds."""

    def __init__(self, out: Any, *, tty: bool, every: float = 10.0, as_json: bool = False) -> None:
        self.out, self.tty, self.every, self.as_json = out, tty, every, as_json
        self._live: Live | None = None
        self._next = time.monotonic() + every

    def __call__(self, generator: Generator, final: bool) -> None:
        if self.tty:
            if self._live is None:
                self._live = Live(console=Console(file=cast(IO[str], self.out)), refresh_per_second=4, transient=True)
                self._live.start()
            self._live.update(Text(status_line(generator)))
            if final:
                self._live.stop()
        elif not final and time.monotonic() >= self._next:
            self.out.write(status_line(generator) + "\n")
            self.out.flush()
            self._next = time.monotonic() + self.every

    def final(self, summary: dict[str, Any]) -> None:
        self.out.write(summary_text(summary) + "\n")
        if self.as_json:
            self.out.write(json.dumps(summary) + "\n")
        self.out.flush()
