"""Ballot submissions per second with tracing and JSON logs on (every trace kept), beside both off.

gunicorn servers on the same database, started together and loaded in turn
with wrk, as bench/ballot_submit.py loads one (its helpers: players with
tokens, a fresh lottery per run, every ballot a player's first there, so each
must be accepted):

* off: OTEL_ENABLED=false and LOG_FORMAT=console, tracing and JSON logs both
  off: the goal's baseline;
* json: OTEL_ENABLED=false and LOG_FORMAT=json, so that tracing's own cost
  shows apart from the logs' format;
* traced: OTEL_ENABLED=true, OTEL_TRACES_SAMPLE_RATIO=1.0 and LOG_FORMAT=json,
  OTEL_EXPORTER_OTLP_ENDPOINT at a receiver in this process that reads each
  export and throws it away without decoding it;
* sampled (--sampled, default 0.1): the same keeping that share of traces,
  the ratio to recommend for production.

The order alternates between rounds; the medians are compared. Beside the
rates, each server's own CPU time per ballot (from /proc), a steadier figure
when the machine is shared.

Prints requests/s, p99 and CPU per ballot of each, the ratios (goal: traced at
least 0.85 of off, and traced to json, tracing's cost alone, as well), what the receiver
took, and last one JSON summary.

Run from the project root:  .venv/bin/python bench/tracing.py [--help]
Needs wrk (apt-get install -y wrk), PostgreSQL and Redis on 127.0.0.1.
Uses (and drops) the database lottery_bench_tracing and Redis database 14.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import _common
import ballot_submit
from ballot_submit import WrkResult

DB_NAME = "lottery_bench_tracing"
SAMPLE_RATIO = "1.0"  # pinned: every request traced, the most it can cost
GOAL = 0.85


def cpu_seconds(master: int) -> float:
    """CPU time (user + system) of a gunicorn master and its live workers so far, from /proc."""
    total = 0.0
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return float("nan")
    for pid in [master, *map(int, children)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class DiscardingReceiver:
    """An OTLP/HTTP endpoint that reads each export, counts it, and answers 200 without decoding it."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                with lock:
                    receiver.requests += 1
                    receiver.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per server and round")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every server")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--players", type=int, default=60_000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers of each server")
    parser.add_argument(
        "--sampled", type=float, default=0.1, help="also a fourth server at this sampling ratio (0: none)"
    )
    parser.add_argument(
        "--traced-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more environment for the traced and sampled servers, e.g. OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis",
    )
    args = parser.parse_args()
    args.worker_class, args.threads = "sync", 1  # ballot_submit.gunicorn's
    if args.connections < args.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    return args


def main() -> int:
    args = parse_args()
    banner = (
        f"tracing: gunicorn servers ({args.workers} sync workers each): off (console logs), json (JSON logs), "
        f"traced (JSON logs, sampling {SAMPLE_RATIO}){f', sampled ({args.sampled})' if args.sampled else ''};"
        f" wrk {args.connections} connections, "
        f"{args.duration} s per server after {args.warmup} s warm-up, {args.rounds} round(s)"
    )
    return ballot_submit.on_scratch_database(
        "tracing", DB_NAME, banner=banner, tmp_prefix="bench-tracing-", run=lambda tmp: run(args, tmp)
    )


def run(args: argparse.Namespace, tmp: Path) -> int:
    prepared = ballot_submit.prepared_load(args, tmp, DB_NAME)
    fixture, script = prepared.fixture, prepared.script
    receiver = DiscardingReceiver()
    envs = {
        "off": {"OTEL_ENABLED": "false", "LOG_FORMAT": "console"},
        "json": {"OTEL_ENABLED": "false", "LOG_FORMAT": "json"},
        "traced": traced_env(receiver, SAMPLE_RATIO, args),
    }
    if args.sampled:
        envs["sampled"] = traced_env(receiver, str(args.sampled), args)
    measured = {name: Measured() for name in envs}
    try:
        with ExitStack() as stack:
            servers = [
                (name, stack.enter_context(ballot_submit.gunicorn(args, tmp, db_name=DB_NAME, extra_env=env)))
                for name, env in envs.items()
            ]
            for round_no in range(1, args.rounds + 1):
                for name, url in servers if round_no % 2 else reversed(servers):
                    warm = ballot_submit.open_lotteries(prepared.per_warmup, f"{name} warm-up {round_no}")
                    ballot_submit.wrk(args, url, script, "ballot", args.warmup, fixture.tokens_file, warm)
                    lotteries = ballot_submit.open_lotteries(prepared.per_run, f"{name} run {round_no}")
                    before = cpu_seconds(ballot_submit.SERVER_PIDS[url])
                    result = ballot_submit.wrk(
                        args, url, script, "ballot", args.duration, fixture.tokens_file, lotteries
                    )
                    measured[name].add(result, lotteries, cpu_seconds(ballot_submit.SERVER_PIDS[url]) - before)
                print(
                    f"round {round_no}: "
                    + " | ".join(f"{name} {ballot_submit.line(m.results[-1])}" for name, m in measured.items()),
                    flush=True,
                )
            time.sleep(1)  # the traced servers' last batch of spans (an exporter sends at least every 5 s)
    finally:
        receiver.stop()
    return report(args, measured, receiver)


def traced_env(receiver: DiscardingReceiver, ratio: str, args: argparse.Namespace) -> dict[str, str]:
    env = {
        "OTEL_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLE_RATIO": ratio,
        "LOG_FORMAT": "json",
    }
    env.update(item.split("=", 1) for item in args.traced_env)
    return env


@dataclass
class Measured:
    results: list[WrkResult] = field(default_factory=list)
    lotteries: list[list[int]] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # the server's CPU time per request, each run

    def add(self, result: WrkResult, lotteries: list[int], cpu_seconds: float) -> None:
        self.results.append(result)
        self.lotteries.append(lotteries)
        self.cpu_ms.append(cpu_seconds * 1000 / max(result.requests, 1))


LABELS = {"off": "off", "json": "json logs", "traced": f"traced {SAMPLE_RATIO}"}


def report(args: argparse.Namespace, measured: dict[str, Measured], receiver: DiscardingReceiver) -> int:
    from entries.models import Ballot

    problems: list[str] = []
    figures: dict[str, dict[str, float]] = {}
    print("results" + (f" (median of {args.rounds} rounds)" if args.rounds > 1 else ""))
    for name, m in measured.items():
        rps = statistics.median(r.rps for r in m.results)
        p99 = statistics.median(r.p99_ms for r in m.results)
        cpu = statistics.median(m.cpu_ms)
        figures[name] = {"rps": round(rps, 1), "p99_ms": round(p99, 1), "server_cpu_ms_per_ballot": round(cpu, 2)}
        label = LABELS.get(name, f"sampled {args.sampled}")
        print(
            f"  {label:<13} {rps:8.1f} ballots/s   p99 {p99:7.1f} ms   server CPU {cpu:5.2f} ms per ballot   "
            f"({sum(r.requests for r in m.results)} responses)"
        )
        for result, ids in zip(m.results, m.lotteries, strict=True):
            if result.not_ok:
                problems.append(f"{name}: {result.not_ok} non-2xx ({ballot_submit.statuses_text(result)})")
            if result.socket_errors:
                problems.append(f"{name}: socket errors {result.errors}")
            if result.exhausted:
                problems.append(f"{name}: {result.exhausted} requests reused a player (too few lotteries)")
            stored = Ballot.objects.filter(lottery_id__in=ids, status=Ballot.Status.VALID).count()
            if not result.ok <= stored <= result.ok + args.connections:
                problems.append(f"{name}: {stored} valid ballots stored for {result.ok} accepted")
    traced_requests = sum(r.requests for r in measured["traced"].results)
    print(
        f"  the receiver took {receiver.requests} exports, {receiver.bytes / 1e6:.1f} MB "
        f"(about {receiver.bytes / max(traced_requests, 1):.0f} bytes per traced request, not decoded)"
    )
    if receiver.requests == 0:
        problems.append("the traced server exported nothing")

    def rate(name: str, base: str) -> float:
        return figures[name]["rps"] / figures[base]["rps"]

    def cpu(name: str, base: str) -> float:  # CPU per ballot, base over name: above 1 when name is cheaper
        return figures[base]["server_cpu_ms_per_ballot"] / figures[name]["server_cpu_ms_per_ballot"]

    goal = rate("traced", "off")
    print(f"  ratio traced/off: {goal:.2f} (goal: at least {GOAL}), CPU off/traced {cpu('traced', 'off'):.2f}")
    print(
        f"  tracing alone, traced/json: {rate('traced', 'json'):.2f} (goal: at least {GOAL}), "
        f"CPU json/traced {cpu('traced', 'json'):.2f}; "
        f"JSON logs alone, json/off: {rate('json', 'off'):.2f}, CPU off/json {cpu('json', 'off'):.2f}"
    )
    sampled: dict[str, float] = {}
    if args.sampled:
        sampled = {
            f"sampled {args.sampled}/off": round(rate("sampled", "off"), 3),
            f"sampled {args.sampled}/json": round(rate("sampled", "json"), 3),
        }
        print(
            f"  at sampling {args.sampled}: ratio to off {rate('sampled', 'off'):.2f}, to json "
            f"{rate('sampled', 'json'):.2f}; CPU json/sampled {cpu('sampled', 'json'):.2f}"
        )
    for problem in problems:
        print(f"  !! INVALID RUN: {problem}")
    _common.summary(
        "tracing",
        valid=not problems,
        figures={
            "traced_ballots_per_s": round(figures["traced"]["rps"], 1),
            "off_ballots_per_s": round(figures["off"]["rps"], 1),
            "json_logs_ballots_per_s": round(figures["json"]["rps"], 1),
            "sampling": float(SAMPLE_RATIO),
            "spans_exported_bytes": receiver.bytes,
        },
        ratios={
            "traced/off": round(goal, 3),
            "cpu off/traced": round(cpu("traced", "off"), 3),
            "traced/json (tracing alone)": round(rate("traced", "json"), 3),
            "cpu json/traced (tracing alone)": round(cpu("traced", "json"), 3),
            "json/off (JSON logs alone)": round(rate("json", "off"), 3),
            **sampled,
        },
        # The goal's own ratio, and tracing's cost apart from the logs' format: JSON is the logs' default
        # everywhere but bin/run, and the console renderer's cost alone has met the first one here.
        goals={
            f"traced/off >= {GOAL}": goal >= GOAL,
            f"traced/json (tracing alone) >= {GOAL}": rate("traced", "json") >= GOAL,
        },
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
