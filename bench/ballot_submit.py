"""Ballot submissions per second through a real HTTP server, beside an authenticated no-op.

Starts gunicorn on lottery_site.wsgi (production settings: DEBUG off, high
throttle rates), loads it with wrk, and prints requests/s and p99 latency of
POST /api/v1/lotteries/<id>/ballots beside GET /api/v1/ping (same
middleware, token authentication and throttling, no work), measured in the
same run, and their ratio. Every request uses another player's token, so
each ballot is a player's first in its lottery and must be accepted (201):
the script checks afterwards that the database holds that many valid
ballots, and reports every non-2xx answer. It also counts, in process, the
database round trips and Redis commands of one request of each kind.

Server: 2 sync workers by default. On the 2-core machine gthread (2 workers x
2 threads) served as many ballots per second, with a p99 about 1.5-2 times
higher; --worker-class gthread --threads N tries it.

Run from the project root:  .venv/bin/python bench/ballot_submit.py [--help]
Needs wrk (apt-get install -y wrk), PostgreSQL and Redis on 127.0.0.1.
Uses (and drops) the database lottery_bench_ballots and Redis database 14.
"""

import argparse
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import _common  # also puts the project root on sys.path

from tests.kafka import free_port
from tests.servers import stop, wait_until_serving

DB_NAME = "lottery_bench_ballots"
SPREAD_LOTTERIES = 32  # the spread load's lotteries: ballots into one drop are compared with this
GOAL = 0.5  # ballots/ping
PING_PATH = "/api/v1/ping"
# Far above what two cores can submit: each run gets enough lotteries that no
# player enters one twice even at this rate (the script reports it otherwise).
MAX_EXPECTED_RPS = 10_000

# wrk script. Thread t of T sends its k-th request (j = t + k*T) as player
# j mod N into the run's lottery number j div N (mode "ballot": one lottery
# takes the whole load, as a big drop does), or as player (j div L) mod N
# into lottery j mod L (mode "spread": the same load over L lotteries): a
# player never enters the same lottery twice. Arguments: mode
# (ping|ballot|spread), T, tokens file, lottery ids.
LUA_SCRIPT = r"""
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  stride = tonumber(args[2])
  tokens = {}
  for line in io.lines(args[3]) do
    tokens[#tokens + 1] = "Token " .. line
  end
  paths = {}
  for id in string.gmatch(args[4] or "", "%d+") do
    paths[#paths + 1] = "/api/v1/lotteries/" .. id .. "/ballots"
  end
  k = tid
  statuses = {}
  exhausted = 0
end

function request()
  local n = #tokens
  local player = k % n
  local round = math.floor(k / n)
  k = k + stride
  local headers = {Authorization = tokens[player + 1]}
  if mode == "ping" then
    return wrk.format("GET", "/api/v1/ping", headers)
  end
  if mode == "spread" then
    local j = k - stride
    local lottery = j % #paths
    if math.floor(j / #paths) >= n then
      exhausted = exhausted + 1
    end
    headers = {Authorization = tokens[(math.floor(j / #paths) % n) + 1]}
    return wrk.format("POST", paths[lottery + 1], headers, "")
  end
  if round >= #paths then
    exhausted = exhausted + 1
    round = round % #paths
  end
  return wrk.format("POST", paths[round + 1], headers, "")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total, spent = {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    spent = spent + thread:get("exhausted")
  end
  local parts = {}
  for status, count in pairs(total) do
    parts[#parts + 1] = status .. "=" .. count
  end
  io.write("BENCH statuses " .. table.concat(parts, " ") .. "\n")
  local e = summary.errors
  io.write(string.format(
    "BENCH summary requests=%d duration_us=%d exhausted=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, spent, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("BENCH latency_us p50=%d p90=%d p99=%d max=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]
    exhausted: int
    latency_us: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        return self.latency_us["p99"] / 1000

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def not_ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values()) - self.errors.get("status", 0)


@dataclass
class Fixture:
    tokens_file: Path
    tokens: list[str]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per endpoint and round")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each measurement")
    parser.add_argument("--rounds", type=int, default=2, help="ping/ballots measurements, alternating")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--players", type=int, default=60_000)
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread)")
    args = parser.parse_args()
    if args.connections < args.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    return args


def main() -> int:
    args = parse_args()
    server = f"gunicorn {args.worker_class}, {args.workers} workers"
    if args.worker_class == "gthread":
        server += f" x {args.threads} threads"
    banner = (
        f"ballot_submit: {server}; wrk {args.wrk_threads} thread(s), {args.connections} connections, "
        f"{args.duration} s per endpoint after {args.warmup} s warm-up, {args.rounds} round(s)"
    )
    return on_scratch_database(
        "ballot_submit", DB_NAME, banner=banner, tmp_prefix="bench-ballots-", run=lambda tmp: run(args, tmp)
    )


def on_scratch_database(name: str, db_name: str, *, banner: str, tmp_prefix: str, run: Callable[[Path], int]) -> int:
    """What this benchmark and bench/tracing.py do around their run: wrk must be there (else 2), then
    ``banner``, and ``run`` in a temporary directory on a fresh ``db_name`` and a flushed Redis, both
    dropped and flushed again afterwards."""
    if shutil.which("wrk") is None:
        print(f"{name}: wrk is not installed; install it with `apt-get install -y wrk` and run again.")
        return 2
    print(banner, flush=True)
    _common.setup_django(db_name)
    _common.create_database(db_name)
    _common.flush_redis()
    try:
        with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
            return run(Path(tmp))
    finally:
        _common.flush_redis()
        _common.drop_database(db_name)
        print(f"  .. dropped database {db_name}, flushed Redis database 14", flush=True)


@dataclass
class Load:
    """A migrated database's ballot load: its players, the wrk script, lotteries enough for a run and a warm-up."""

    fixture: Fixture
    script: Path
    per_run: int
    per_warmup: int


def prepared_load(args: argparse.Namespace, tmp: Path, db_name: str) -> Load:
    """Migrate ``db_name``, create ``--players`` players with tokens and write the wrk script into ``tmp``."""
    started = time.perf_counter()
    _common.migrate()
    _common.step(f"database {db_name} migrated ({time.perf_counter() - started:.1f} s)")
    fixture = create_players(args.players, tmp)
    script = tmp / "rotate_tokens.lua"
    script.write_text(LUA_SCRIPT)
    return Load(
        fixture,
        script,
        per_run=math.ceil(MAX_EXPECTED_RPS * args.duration / args.players) + 1,
        per_warmup=math.ceil(MAX_EXPECTED_RPS * args.warmup / args.players) + 1,
    )


def run(args: argparse.Namespace, tmp: Path) -> int:
    prepared = prepared_load(args, tmp, DB_NAME)
    fixture, script = prepared.fixture, prepared.script

    print("per request, in process through the WSGI handler (what one gunicorn request runs):")
    probe_lottery = open_lotteries(1, "probe")[0]
    for name, method, path in (("ping", "GET", PING_PATH), ("ballot", "POST", ballot_path(probe_lottery))):
        print(f"  {name:<7}{describe_probe(count_round_trips(method, path, fixture.tokens[-2:]))}")

    pings: list[WrkResult] = []
    ballots: list[WrkResult] = []
    spread: list[WrkResult] = []
    run_lotteries: list[list[int]] = []
    spread_lotteries: list[list[int]] = []
    with gunicorn(args, tmp) as base_url:

        def load(mode: str, seconds: int, lotteries: list[int]) -> WrkResult:
            return wrk(args, base_url, script, mode, seconds, fixture.tokens_file, lotteries)

        for round_no in range(1, args.rounds + 1):
            load("ping", args.warmup, [])
            pings.append(load("ping", args.duration, []))
            load("ballot", args.warmup, open_lotteries(prepared.per_warmup, f"warm-up {round_no}"))
            run_lotteries.append(open_lotteries(prepared.per_run, f"run {round_no}"))
            ballots.append(load("ballot", args.duration, run_lotteries[-1]))
            spread_lotteries.append(open_lotteries(SPREAD_LOTTERIES, f"spread {round_no}"))
            spread.append(load("spread", args.duration, spread_lotteries[-1]))
            print(
                f"round {round_no}: ping {line(pings[-1])} | ballots {line(ballots[-1])} | spread {line(spread[-1])}",
                flush=True,
            )

    return report(pings, {"ballots": (ballots, run_lotteries), "spread": (spread, spread_lotteries)}, args)


def create_players(count: int, tmp: Path) -> Fixture:
    from rest_framework.authtoken.models import Token

    from entries.models import Player

    started = time.perf_counter()
    players = Player.objects.bulk_create(
        (Player(username=f"bench-{i:06d}", password="!") for i in range(count)), batch_size=5_000
    )
    tokens = [Token(key=Token.generate_key(), user_id=player.pk) for player in players]
    Token.objects.bulk_create(tokens, batch_size=5_000)
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text("".join(f"{token.key}\n" for token in tokens))
    _common.step(f"{count} players with tokens ({time.perf_counter() - started:.1f} s)")
    return Fixture(tokens_file=tokens_file, tokens=[t.key for t in tokens])


def open_lotteries(count: int, label: str) -> list[int]:
    from django.utils import timezone

    from lifecycle.services import lottery_open

    now = timezone.now()
    return [
        lottery_open(
            kind="drop",
            title=f"Benchmark {label} #{i}",
            day=now.date(),
            opens_at=now - timedelta(minutes=1),
            closes_at=now + timedelta(days=1),
            prize="Benchmark prize",
        ).pk
        for i in range(count)
    ]


def ballot_path(lottery_id: int) -> str:
    return f"/api/v1/lotteries/{lottery_id}/ballots"


# --- Round trips of one request, counted in process --------------------------


@dataclass
class Probe:
    status: int
    statements: list[str]
    health_checks: int
    redis_commands: list[str]


def count_round_trips(method: str, path: str, tokens: list[str]) -> Probe:
    """Run the request through Django's WSGI handler, as gunicorn does, and count what it sends.

    SQL statements: CaptureQueriesContext. The per-request connection health
    check (CONN_HEALTH_CHECKS, a ``SELECT 1`` on the raw connection) is not
    seen by it, so it is counted apart. Redis: commands sent by redis-py. The
    first token's request warms connections up; the second one is counted.
    """
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connections
    from django.test.utils import CaptureQueriesContext
    from redis import Redis

    app = WSGIHandler()
    connection = connections["default"]
    health_checks: list[None] = []
    redis_commands: list[str] = []
    is_usable = connection.is_usable
    execute_command = Redis.execute_command

    def counting_is_usable() -> bool:
        health_checks.append(None)
        return is_usable()

    def counting_execute_command(self: Redis, *args, **options):
        redis_commands.append(str(args[0]))
        return execute_command(self, *args, **options)

    call_wsgi(app, method, path, tokens[0])
    connection.is_usable = counting_is_usable
    Redis.execute_command = counting_execute_command
    try:
        with CaptureQueriesContext(connection) as queries:
            status = call_wsgi(app, method, path, tokens[1])
    finally:
        del connection.is_usable
        Redis.execute_command = execute_command
    return Probe(status, [q["sql"] for q in queries.captured_queries], len(health_checks), redis_commands)


def call_wsgi(app, method: str, path: str, token: str) -> int:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "CONTENT_LENGTH": "0",
        "wsgi.input": io.BytesIO(b""),
    }
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        b"".join(body)
    finally:
        body.close()
    return int(statuses[0].split()[0])


def describe_probe(probe: Probe) -> str:
    sql = "; ".join(" ".join(s.split())[:60] + "..." for s in probe.statements)
    return (
        f"HTTP {probe.status}: {len(probe.statements)} SQL statement(s) [CaptureQueriesContext] "
        f"+ {probe.health_checks} connection health check (SELECT 1) "
        f"= {len(probe.statements) + probe.health_checks} database round trips; "
        f"{len(probe.redis_commands)} Redis commands ({' '.join(probe.redis_commands)})\n"
        f"         SQL: {sql}"
    )


# --- Server and load ---------------------------------------------------------


SERVER_PIDS: dict[str, int] = {}  # gunicorn's master process, by base URL (bench/tracing.py reads its CPU time)


@contextmanager
def gunicorn(
    args: argparse.Namespace, tmp: Path, *, db_name: str = DB_NAME, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """gunicorn on a free port of the benchmark database; ``extra_env`` on top (bench/tracing.py's tracing on)."""
    port = free_port()
    env = {**os.environ, **_common.bench_env(db_name)}
    env.pop("LOG_LEVEL", None)  # the server logs as the application does by default
    env.update(extra_env or {})
    env["GUNICORN_ACCESS_LOG"] = ""  # gunicorn.conf.py (read from the root) would log every request
    command = [
        str(_common.ROOT / ".venv" / "bin" / "gunicorn"),
        "lottery_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads),
        "--log-level",
        "warning",
    ]
    log_path = tmp / f"gunicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=_common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base_url] = process.pid
    try:
        wait_until_serving(f"{base_url}/health/live", process, log_path, timeout=30, name="gunicorn")
        _common.step(f"gunicorn listening on {base_url} (pid {process.pid})")
        yield base_url
    finally:
        stop(process)
        _common.step("gunicorn stopped")
        errors = [ln for ln in log_path.read_text(errors="replace").splitlines() if "Traceback" in ln or "ERROR" in ln]
        if errors:
            print(f"  !! gunicorn logged {len(errors)} error line(s); first: {errors[0]}")


def wrk(
    args: argparse.Namespace,
    base_url: str,
    script: Path,
    mode: str,
    seconds: int,
    tokens_file: Path,
    lotteries: list[int],
) -> WrkResult:
    command = [
        "wrk",
        "--threads",
        str(args.wrk_threads),
        "--connections",
        str(args.connections),
        "--duration",
        f"{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "--script",
        str(script),
        base_url,
        "--",
        mode,
        str(args.wrk_threads),
        str(tokens_file),
        ",".join(map(str, lotteries)),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if completed.returncode != 0 or "BENCH summary" not in completed.stdout:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return parse_wrk(completed.stdout)


def parse_wrk(output: str) -> WrkResult:
    lines = {ln.split()[1]: ln.split()[2:] for ln in output.splitlines() if ln.startswith("BENCH ")}

    def pairs(name: str) -> dict[str, int]:
        return {key: int(value) for key, value in (item.split("=") for item in lines[name])}

    summary = pairs("summary")
    requests, duration_us, exhausted = summary.pop("requests"), summary.pop("duration_us"), summary.pop("exhausted")
    return WrkResult(
        requests=requests,
        seconds=duration_us / 1e6,
        statuses={int(k): v for k, v in pairs("statuses").items()},
        errors=summary,
        exhausted=exhausted,
        latency_us=pairs("latency_us"),
    )


# --- Report ------------------------------------------------------------------


def line(result: WrkResult) -> str:
    return f"{result.rps:7.1f} req/s, p99 {result.p99_ms:6.1f} ms"


def statuses_text(result: WrkResult) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))


def report(
    pings: list[WrkResult], loads: dict[str, tuple[list[WrkResult], list[list[int]]]], args: argparse.Namespace
) -> int:
    from django.db.models import Count

    from entries.models import Ballot

    problems: list[str] = []
    print("results" + (f" (median of {args.rounds} rounds)" if args.rounds > 1 else ""))
    ballots, spread = loads["ballots"][0], loads["spread"][0]
    named = (("ping (baseline)", pings), ("ballots", ballots), (f"spread over {SPREAD_LOTTERIES}", spread))
    for name, results in named:
        rps = statistics.median(r.rps for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        requests = sum(r.requests for r in results)
        print(
            f"  {name:<16} {rps:8.1f} req/s   p99 {p99:7.1f} ms   ({requests} responses: {statuses_text_all(results)})"
        )
        for result in results:
            if result.not_ok:
                problems.append(f"{name}: {result.not_ok} non-2xx responses ({statuses_text(result)})")
            if result.socket_errors:
                problems.append(f"{name}: socket errors {result.errors}")
            if result.exhausted:
                problems.append(f"{name}: {result.exhausted} requests reused a player (too few lotteries)")

    by_status = dict(Ballot.objects.values_list("status").annotate(n=Count("id")).order_by())
    print(f"  ballots in the database (runs, warm-ups, probe): {by_status}")
    if set(by_status) != {Ballot.Status.VALID}:
        problems.append(f"ballots not valid: {by_status}")
    for name, (results, lotteries_of_round) in loads.items():
        for round_no, (result, lotteries) in enumerate(zip(results, lotteries_of_round, strict=True), start=1):
            stored = Ballot.objects.filter(lottery_id__in=lotteries, status=Ballot.Status.VALID).count()
            # wrk stops with requests in flight: the server may still store those.
            print(f"  {name} round {round_no}: {stored} valid ballots stored for {result.ok} 2xx responses")
            if not result.ok <= stored <= result.ok + args.connections:
                problems.append(f"{name} round {round_no}: {stored} valid ballots stored for {result.ok} accepted")

    ballot_rps, ping_rps = statistics.median(r.rps for r in ballots), statistics.median(r.rps for r in pings)
    ratio = ballot_rps / ping_rps
    print(f"  ratio ballots/ping: {ratio:.2f} (goal: at least {GOAL})")
    # Saturated workers: each request holds one worker slot for (slots / rate) seconds.
    slots = args.workers * (args.threads if args.worker_class == "gthread" else 1)
    extra_ms = (slots / ballot_rps - slots / ping_rps) * 1000
    print(f"  cost  a ballot takes {extra_ms:.2f} ms of worker time more than a ping ({slots} worker slots)")
    hot = ballot_rps / statistics.median(r.rps for r in spread)
    print(f"  ratio one lottery/spread over {SPREAD_LOTTERIES}: {hot:.2f} (a hot drop; goal: at least 0.9)")
    for problem in problems:
        print(f"  !! INVALID RUN: {problem}")
    _common.summary(
        "ballot_submit",
        valid=not problems,
        figures={
            "ballots_per_s": round(ballot_rps, 1),
            "ballot_p99_ms": round(statistics.median(r.p99_ms for r in ballots), 1),
            "ping_per_s": round(ping_rps, 1),
            "ping_p99_ms": round(statistics.median(r.p99_ms for r in pings), 1),
            "ballot_minus_ping_worker_ms": round(extra_ms, 2),
        },
        ratios={"ballots/ping": round(ratio, 2), "one_lottery/spread": round(hot, 2)},
        goals={f"ballots/ping >= {GOAL}": ratio >= GOAL, "one lottery/spread >= 0.9": hot >= 0.9},
    )
    return 1 if problems else 0


def statuses_text_all(results: list[WrkResult]) -> str:
    total: dict[int, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            total[status] = total.get(status, 0) + count
    return ", ".join(f"{status}: {count}" for status, count in sorted(total.items()))


if __name__ == "__main__":
    sys.exit(main())
