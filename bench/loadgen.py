"""The load generator under load: entries per second requested against achieved, and its own CPU share.

Creates a throw-away database and serves it with gunicorn (gunicorn.conf.py: 2 workers of 4 threads) on a
free port, then runs ``manage.py loadgen`` in its own process at a time scale where drops overlap: every
drop a traffic burst of --burst-entries entries at 25 a second (real seconds, whatever the scale), one drop
every --burst-entries/--rate seconds, so about --rate/25 bursts overlap and --rate entries a second are due. No worker
runs: the drops are never drawn, which the generator does not wait for (--drain 0).

Printed, per load (at --rate; then, if the server could not keep up, again at 0.8 of what it achieved, its
maximum): entries/s requested and achieved in the run's steady middle (the medians of its seconds), the
generator's CPU seconds over its wall time (its share of one core), its CPU per entry, lag p50/p99 (how late
entries went out) and what the server refused; then the generator's share of a core at --rate from its CPU
per entry at the load the server kept up (goal: under 0.25 at 200 entries/s). The last line is the summary as
JSON. A run whose generator fails, or whose measured entries are refused for anything but a cheat's
duplicate_entry, is invalid (exit 1).

Run from the project root:  .venv/bin/python bench/loadgen.py [--rate 200] [--seconds 30]
Needs PostgreSQL and Redis on 127.0.0.1. Uses (and drops) the database lottery_bench_loadgen and flushes
Redis database 14 (BENCH_REDIS_URL sets another).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common

DB_NAME = "lottery_bench_loadgen"
_common.REDIS_URL = os.environ.get("BENCH_REDIS_URL", _common.REDIS_URL)
TOKENS = {"INTERNAL_DROPS_TOKEN": "bench-drops-token-0000", "INTERNAL_LOADGEN_TOKEN": "bench-loadgen-token-000"}
BURST_PER_SECOND = 25
TIME_SCALE = 60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="entries per second to request")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long drops are created, per load")
    parser.add_argument("--burst-entries", type=int, default=250, help="entries per drop (a burst of 10 s)")
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="the generator's entries in flight")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    overlap = args.rate / BURST_PER_SECOND
    interval = args.burst_entries / BURST_PER_SECOND / overlap  # real seconds between drops
    # The measured load runs where the server keeps up: at --rate, or again at its maximum when that is lower.
    print(
        f"loadgen: {args.rate:g} entries/s requested for {args.seconds:g} s: a burst of {args.burst_entries} at "
        f"{BURST_PER_SECOND}/s every {interval:.2f} s ({overlap:g} at once), time scale {TIME_SCALE}",
        flush=True,
    )
    os.environ.update(TOKENS)
    _common.setup_django(DB_NAME)
    _common.create_database(DB_NAME)
    _common.flush_redis()
    try:
        _common.migrate()
        return run(args, interval)
    finally:
        _common.flush_redis()
        _common.drop_database(DB_NAME)
        print(f"  .. dropped database {DB_NAME}", flush=True)


def _server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.kafka import free_port

    port = free_port()
    server_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_ACCESS_LOG": "", "LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            cwd=_common.ROOT,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/health/live", timeout=2):
                return process, base_url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn did not start:\n{log.read_text()}")


def _pins(rate: float, burst_entries: int) -> dict[str, object]:
    """Switches for a steady load of ``rate`` entries/s: every drop one burst at 25/s, drops ``25/rate`` s apart."""
    overlap = rate / BURST_PER_SECOND
    minutes = burst_entries / BURST_PER_SECOND / overlap * TIME_SCALE / 60
    burst = "ANOMALY_TRAFFIC_BURST"
    return {
        "MIN_EVENT_INTERVAL_MINUTES": minutes, "MAX_EVENT_INTERVAL_MINUTES": minutes,
        "ANOMALY_LOW_PARTICIPATION_ENABLED": "false", f"{burst}_PERCENTAGE": 1,
        f"{burst}_MIN_PER_SECOND": BURST_PER_SECOND, f"{burst}_MAX_PER_SECOND": BURST_PER_SECOND,
        f"{burst}_MIN_ENTRIES": burst_entries, f"{burst}_MAX_ENTRIES": burst_entries,
        "ANOMALY_STATS_506_ENABLED": "false",
    }  # fmt: skip


def _generate(args: argparse.Namespace, env: dict[str, str], base_url: str, rate: float, seconds: float) -> dict:  # type: ignore[type-arg]
    command = [
        sys.executable, "manage.py", "loadgen", "--base-url", base_url, "--time-scale", str(TIME_SCALE),
        "--duration", f"{seconds * TIME_SCALE / 60:g}m", "--players", str(args.players),
        "--entries-min", "1", "--entries-max", "1", "--window-min", "30", "--window-max", "30",
        "--concurrency", str(args.concurrency), "--stats-every", "0", "--drain", "0", "--json",
        "--seed", "bench", *(f"--set={name}={value}" for name, value in _pins(rate, args.burst_entries).items()),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=_common.ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the generator failed:\n{done.stdout}\n{done.stderr}")
    summary: dict = json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return summary


def run(args: argparse.Namespace, interval: float) -> int:
    env = {**os.environ, **_common.bench_env(DB_NAME), **TOKENS}
    with tempfile.TemporaryDirectory() as scratch:
        server, base_url = _server(env, Path(scratch) / "gunicorn.log")
        try:
            _common.step(f"gunicorn at {base_url}; the generator runs in its own process")
            first = _generate(args, env, base_url, args.rate, args.seconds)
            show(f"at {args.rate:g} entries/s requested", first)
            achieved = first["rate"]["steady_achieved_per_second"] or 0.0
            measured, bound = first, achieved < 0.9 * args.rate
            if bound:  # the server's maximum is lower: measure the generator there, where nothing queues
                rate = max(BURST_PER_SECOND, 0.8 * achieved)
                _common.step(f"the server answered {achieved:g}/s at most: again at {rate:.0f}/s requested")
                measured = _generate(args, env, base_url, rate, args.seconds)
                show(f"at {rate:.0f} entries/s requested (the server's maximum)", measured)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return summarise(args, first, measured, bound)


def show(title: str, summary: dict) -> None:  # type: ignore[type-arg]
    rate, cpu, entries = summary["rate"], summary["cpu"], summary["entries"]
    requested, achieved = rate["steady_requested_per_second"], rate["steady_achieved_per_second"]
    per_entry_ms = 1000 * cpu["seconds"] / max(1, entries["sent"])
    print(f"  {title}:")
    print(f"    requested / achieved       {requested:.1f} / {achieved:.1f} entries/s (steady medians): "
          f"{achieved / requested if requested else 0:.2f}")  # fmt: skip
    print(f"    lag p50 / p99              {rate['lag_p50_ms']} / {rate['lag_p99_ms']} ms")
    print(f"    generator CPU              {cpu['seconds']:.2f} s over {summary['wall_seconds']:.1f} s: "
          f"{cpu['share_of_a_core']:.3f} of a core, {per_entry_ms:.2f} ms per entry")  # fmt: skip
    print(f"    entries                    {entries['sent']} sent, {entries['accepted']} accepted, "
          f"refused {entries['refused']}")  # fmt: skip


def summarise(args: argparse.Namespace, first: dict, measured: dict, bound: bool) -> int:  # type: ignore[type-arg]
    rate, cpu, entries = measured["rate"], measured["cpu"], measured["entries"]
    requested, achieved = rate["steady_requested_per_second"], rate["steady_achieved_per_second"]
    per_entry_ms = 1000 * cpu["seconds"] / max(1, entries["sent"])
    refused = {code: n for code, n in entries["refused"].items() if code != "duplicate_entry"}
    projected = per_entry_ms * args.rate / 1000
    print(f"  generator CPU at {args.rate:g} entries/s, from its CPU per entry: {projected:.3f} of a core "
          "(goal under 0.25)")  # fmt: skip
    measured_ratio = round(achieved / requested, 3) if requested else 0.0
    _common.summary(
        "loadgen",
        valid=not refused,
        figures={
            "requested_per_s": args.rate,
            "achieved_per_s": first["rate"]["steady_achieved_per_second"] or 0.0,
            "measured_requested_per_s": requested or 0.0,
            "measured_achieved_per_s": achieved or 0.0,
            "generator_cpu_share": cpu["share_of_a_core"] or 0.0,
            "generator_cpu_ms_per_entry": round(per_entry_ms, 3),
            f"generator_cpu_share_at_{args.rate:g}_per_s": round(projected, 3),
            "lag_p99_ms": rate["lag_p99_ms"] or 0.0,
        },
        ratios={"achieved/requested": measured_ratio},
        goals={
            f"generator under 0.25 of a core at {args.rate:g}/s (or the server's maximum)": projected < 0.25,
            "achieved/requested at least 0.9 where the server keeps up": measured_ratio >= 0.9,
        },
    )
    return 0 if not refused else 1


if __name__ == "__main__":
    sys.exit(main())
