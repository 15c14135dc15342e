"""Run the benchmarks, one after another, and write the figures table from what they printed.

Each benchmark prints one JSON summary as its last line (``_common.summary``).
This script runs them (all, or those named), keeps each one's full output in
``bench/logs/<name>.log``, stores the summaries with the machine and the date
in ``bench/results.json``, and rewrites the table between the markers
``<!-- bench-table:begin -->`` and ``<!-- bench-table:end -->`` in
``README.md``, ``bench/README.md`` and ``docs/benchmarks.md``. Nobody copies a
figure by hand: the three show the same table, written from the same file.

A benchmark named on the command line replaces its own entry; the others
keep theirs, each with the date and machine of its own run. A run that exits
with an error, prints no summary, or says its run was invalid is recorded as
invalid, and no goal of it is shown as met.

Run from the project root on a quiet machine:
    .venv/bin/python bench/run_all.py                  # every benchmark, about 15 minutes
    .venv/bin/python bench/run_all.py draw_million     # one, the others' figures kept
    .venv/bin/python bench/run_all.py --write-only     # rewrite the tables from results.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results.json"
LOGS = BENCH / "logs"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
TABLE_FILES = (ROOT / "README.md", BENCH / "README.md", ROOT / "docs" / "benchmarks.md")

# In the order they run: the quick database ones first, the long load runs last.
BENCHMARKS: dict[str, str] = {
    "draw_million": "close and draw one lottery of 1,000,000 ballots",
    "hot_lottery": "the submit statement from 32 sessions into one lottery row",
    "relay_throughput": "outbox relay, 20,000 events",
    "relay_latency": "outbox relay, commit-to-read latency at 200 events/s",
    "stakes_consume": "stake consumer, 10,000 stakes into pools of 3",
    "broadcast": "SMS broadcast to 100,000 players",
    "award_sms": "award commit to winner SMS beside a broadcast and a ballot load",
    "backfill_metrics": "business metrics: backfill of 30 days (one hour of 1,000,000 ballots) and the trailing window",
    "ballot_submit": "ballots through gunicorn (2 sync workers), wrk 32 connections",
    "tracing": "ballots with every trace kept and JSON logs, beside both off",
    "loadgen": "the load generator driving gunicorn with overlapping bursts at 200 entries/s",
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def last_summary(output: str) -> dict[str, Any] | None:
    """The benchmark's JSON summary: its last line that parses as one."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) and "benchmark" in value else None
    return None


def run_one(name: str, extra: list[str]) -> dict[str, Any]:
    LOGS.mkdir(exist_ok=True)
    log = LOGS / f"{name}.log"
    print(f"== {name}: {BENCHMARKS[name]} (output: {log.relative_to(ROOT)})", flush=True)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *extra],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    log.write_text(completed.stdout)
    summary = last_summary(completed.stdout) or {"benchmark": name, "figures": {}, "ratios": {}, "goals": {}}
    if completed.returncode != 0 or summary.get("valid") is not True:
        # An invalid run claims nothing: no goal is judged.
        summary["valid"] = False
        summary["goals"] = {goal: None for goal in summary.get("goals", {})}
        summary["exit_code"] = completed.returncode
    summary["benchmark"] = name
    summary["what"] = BENCHMARKS[name]
    summary["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary["seconds"] = round(time.monotonic() - started)
    summary["machine"] = machine()
    verdict = "valid" if summary["valid"] else f"INVALID (exit {completed.returncode})"
    print(f"   {verdict} in {summary['seconds']} s: {json.dumps(summary['ratios'] or summary['figures'])}", flush=True)
    return summary


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _goal(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not judged (invalid run)"}[met]


def table(results: dict[str, Any]) -> str:
    """The Markdown table of every stored result, in the benchmarks' order."""
    entries = [results["benchmarks"][name] for name in BENCHMARKS if name in results["benchmarks"]]
    lines = [
        "| benchmark | figures | ratio to the same-run baseline | goals | run |",
        "| --- | --- | --- | --- | --- |",
    ]
    machines = {}
    for entry in entries:
        figures = "; ".join(f"{key.replace('_', ' ')} {_number(v)}" for key, v in entry["figures"].items()) or "-"
        ratios = "; ".join(f"{key} {_number(v)}" for key, v in entry["ratios"].items()) or "-"
        goals = "; ".join(f"{goal}: {_goal(met)}" for goal, met in entry["goals"].items()) or "-"
        if not entry["valid"]:
            goals = "INVALID RUN; " + goals
        key = json.dumps(entry["machine"], sort_keys=True)
        machines.setdefault(key, len(machines) + 1)
        run = f"{entry['date']}, machine {machines[key]}"
        lines.append(f"| `{entry['benchmark']}`: {entry['what']} | {figures} | {ratios} | {goals} | {run} |")
    lines.append("")
    for key, number in machines.items():
        m = json.loads(key)
        lines.append(
            f"Machine {number}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
            f"Python {m['python']}, {m['system']}."
        )
    lines.append("Written by `bench/run_all.py` from `bench/results.json`; do not edit by hand.")
    return "\n".join(lines)


def write_tables(results: dict[str, Any]) -> list[Path]:
    """Replace the marked block of each table file; returns the files changed."""
    rendered = table(results)
    changed = []
    for path in TABLE_FILES:
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path.relative_to(ROOT)} has no {BEGIN} ... {END} block")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{BEGIN}\n{rendered}\n{END}{tail}"
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        stored: dict[str, Any] = json.loads(RESULTS.read_text())
        return stored
    return {"benchmarks": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--write-only", action="store_true", help="run nothing: rewrite the tables")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(BENCHMARKS)}")
    results = load_results()
    if not args.write_only:
        names = args.names or list(BENCHMARKS)
        for name in names:
            results["benchmarks"][name] = run_one(name, [])
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for path in write_tables(results):
        print(f"wrote the table in {path.relative_to(ROOT)}")
    invalid = [name for name, entry in results["benchmarks"].items() if not entry["valid"]]
    if invalid:
        print(f"invalid runs: {', '.join(invalid)}")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
