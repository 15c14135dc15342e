"""One hot lottery at the database: 32 sessions submitting ballots to ONE lottery row, beside 32 spread over 32.

A real drop is one lottery that everybody enters at once, and every ballot
takes a share lock on its lottery's row (``FOR SHARE OF l`` in the submit
statement: the close takes the row exclusively, so no ballot commits after the
draw sealed its list). Several transactions sharing a row lock make
PostgreSQL record a MultiXact for the row. This measures what that costs where
two gunicorn workers cannot hide it:

* **hot**: ``--clients`` pgbench sessions run the submit statement, each
  transaction a new player, all against one lottery;
* **spread** (the baseline, same run): the same, each session on a lottery of
  its own.

The statement is the one a valid ballot sends, ``entries.services._SUBMIT_VALID_SQL``
with its outbox row (``outbox.services.statement_event``), taken from the code
(its ``%(name)s`` parameters become pgbench variables), alone in autocommit, as
``ballot_submit`` runs it. Printed per phase: transactions/s,
latency, the MultiXacts created (``pg_control_checkpoint().next_multixact_id``
around the phase, with a CHECKPOINT), the MultiXact SLRU traffic
(``pg_stat_slru``) and what the sessions waited on (``pg_stat_activity``,
sampled). Goal: hot/spread at least 0.8. Only prints; exits 1 when a phase
stored fewer ballots than pgbench counted transactions.

    .venv/bin/python bench/hot_lottery.py [--clients 32] [--seconds 10] [--rounds 2]
"""

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import _common
from ballot_submit import open_lotteries  # drops opened a minute ago, open for a day

DB_NAME = "lottery_bench_hot"
PLAYERS_PER_CLIENT = 8_000  # more than a session submits in a phase (a phase that runs out is reported invalid)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="concurrent sessions (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="pgbench threads (default 2, one per core here)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each phase (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="hot and spread phases, alternating (default 2)")
    return parser.parse_args()


@dataclass
class Phase:
    name: str
    tps: float
    latency_ms: float
    transactions: int
    stored: int
    multixacts: int
    slru: dict[str, int]
    waits: Counter[str]


def main() -> int:
    args = parse_args()
    print(
        f"hot_lottery: {args.clients} sessions, pgbench {args.threads} thread(s), {args.seconds} s per phase, "
        f"{args.rounds} round(s)",
        flush=True,
    )
    _common.setup_django(DB_NAME)
    _common.create_database(DB_NAME)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-hot-") as tmp:
            return run(args, Path(tmp))
    finally:
        _common.drop_database(DB_NAME)
        print(f"  .. dropped database {DB_NAME}", flush=True)


def run(args: argparse.Namespace, tmp: Path) -> int:
    _common.migrate()
    players_created(args.clients)
    phases: list[Phase] = []
    for round_no in range(1, args.rounds + 1):
        for mode in ("spread", "hot"):
            lotteries = open_lotteries(1 if mode == "hot" else args.clients, f"{mode} {round_no}")
            phase = run_phase(args, tmp, mode, lotteries)
            phases.append(phase)
            print(f"round {round_no} {mode:<6} {phase.tps:9.0f} tx/s  latency {phase.latency_ms:6.2f} ms", flush=True)
    return report(phases)


def players_created(clients: int) -> None:
    """Players with known ids: session c submits as c * 1,000,000 + n in its n-th transaction.

    Every phase enters new lotteries, so each phase can use the same players.
    """
    from core.db import copy_rows
    from entries.models import Player

    started = time.perf_counter()
    copy_rows(
        Player,
        (
            {"id": client * 1_000_000 + n, "username": f"hot-{client}-{n}", "password": "!"}
            for client in range(clients)
            for n in range(1, PLAYERS_PER_CLIENT + 1)
        ),
    )
    _common.step(f"{clients * PLAYERS_PER_CLIENT:,} players ({time.perf_counter() - started:.1f} s)")


def pgbench_script(lotteries: list[int]) -> str:
    """The statement a valid ballot sends (its outbox row included), with pgbench variables for its parameters.

    ``ballot_submit`` runs it alone in autocommit (atomic by itself), so the script does too. The
    event's values are those of one sample entry, except its id, new per ballot (``gen_random_uuid()``).
    """
    from django.db import connection
    from django.utils import timezone
    from psycopg import sql as psql

    from entries.events import entry_created
    from entries.services import _SUBMIT_VALID_SQL
    from outbox.services import ID_MARK, statement_event

    event = statement_event(
        entry_created(
            lottery_id=lotteries[0],
            ballot_id=ID_MARK,
            player_id=1,
            player_external_id="acct-1",
            created_at=timezone.now(),
        ),
        source="inserted",
    )
    connection.ensure_connection()
    raw = connection.connection
    values = {name: psql.Literal(value).as_string(raw) for name, value in event.params.items()}
    values["outbox_event_id"] = "gen_random_uuid()"
    values.update(
        {
            "lottery_id": ":lottery",
            "player_id": ":player",
            "status": "'valid'",
            "rejection_reason": "''",
            "idempotency_key": "NULL",
            "now": "now()",
            "limit": "1",
        }
    )
    statement = _SUBMIT_VALID_SQL.replace("{event_insert}", event.sql)
    statement = re.sub(r"%\((\w+)\)s", lambda match: values[match.group(1)], statement)
    statement = " ".join(statement.split())  # pgbench reads one statement per line
    # A session's n-th transaction is a new player, on its lottery (ids in a row: opened one after another).
    if lotteries != list(range(lotteries[0], lotteries[0] + len(lotteries))):
        raise RuntimeError(f"the phase's lotteries are not consecutive: {lotteries}")
    lottery = f"{lotteries[0]}" if len(lotteries) == 1 else f"{lotteries[0]} + :client_id"
    return f"\\set k :k + 1\n\\set player :client_id * 1000000 + :k\n\\set lottery {lottery}\n{statement};\n"


def run_phase(args: argparse.Namespace, tmp: Path, mode: str, lotteries: list[int]) -> Phase:
    from django.db import connection

    script = tmp / f"{mode}-{lotteries[0]}.sql"
    script.write_text(pgbench_script(lotteries))
    multixact_before = next_multixact()
    slru_before = slru()
    waits: Counter[str] = Counter()
    stop = threading.Event()
    sampler = threading.Thread(target=sample_waits, args=(waits, stop), daemon=True)
    sampler.start()
    result = subprocess.run(
        ["pgbench", "-h", _common.PG_HOST, "-p", str(_common.PG_PORT), "-U", _common.PG_USER, "-n",
         "-c", str(args.clients), "-j", str(args.threads), "-T", str(args.seconds), "-D", "k=0",
         "-f", str(script), DB_NAME],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    stop.set()
    sampler.join()
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM entries_ballot WHERE lottery_id = ANY(%s)", [lotteries])
        stored = cursor.fetchone()[0]
    after = slru()
    return Phase(
        name=mode,
        tps=float(_field(result.stdout, r"tps = ([\d.]+)")),
        latency_ms=float(_field(result.stdout, r"latency average = ([\d.]+) ms")),
        transactions=int(_field(result.stdout, r"number of transactions actually processed: (\d+)")),
        stored=stored,
        multixacts=next_multixact() - multixact_before,
        slru={name: after[name] - slru_before.get(name, 0) for name in after},
        waits=waits,
    )


def _field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"pgbench printed no {pattern!r}:\n{text}")
    return match.group(1)


def next_multixact() -> int:
    """The next MultiXact id, from a fresh checkpoint's record (the counter PostgreSQL hands out)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
        cursor.execute("SELECT next_multixact_id::text::bigint FROM pg_control_checkpoint()")
        return int(cursor.fetchone()[0])


def slru() -> dict[str, int]:
    """MultiXact SLRU traffic so far: pages zeroed (new), hit, read and written, per cache."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, blks_zeroed, blks_hit, blks_read, blks_written FROM pg_stat_slru"
            " WHERE name IN ('MultiXactOffset', 'MultiXactMember')"
        )
        rows = cursor.fetchall()
    return {
        f"{name} {kind}": value
        for name, *values in rows
        for kind, value in zip(("zeroed", "hit", "read", "written"), values, strict=True)
    }


def sample_waits(waits: Counter[str], stop: threading.Event) -> None:
    """What the benchmark's sessions wait on, sampled every 20 ms (a session running on CPU counts as 'CPU')."""
    import psycopg

    with psycopg.connect(
        host=_common.PG_HOST, port=_common.PG_PORT, user=_common.PG_USER, dbname=DB_NAME, autocommit=True
    ) as conn:
        while not stop.wait(0.02):
            for wait_type, event in conn.execute(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'pgbench' AND state = 'active'",
                [DB_NAME],
            ):
                waits[f"{wait_type}:{event}" if wait_type else "CPU"] += 1


def report(phases: list[Phase]) -> int:
    by_mode = {mode: [p for p in phases if p.name == mode] for mode in ("spread", "hot")}

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if len(ordered) % 2 else sum(ordered[len(ordered) // 2 - 1 :][:2]) / 2

    print("results (median of the rounds)")
    for mode, label in (("spread", "spread (baseline)"), ("hot", "hot (one lottery)")):
        runs = by_mode[mode]
        multixacts = sum(p.multixacts for p in runs)
        transactions = sum(p.transactions for p in runs)
        print(
            f"  {label:<18} {median([p.tps for p in runs]):9.0f} tx/s   latency "
            f"{median([p.latency_ms for p in runs]):6.2f} ms   MultiXacts {multixacts:,} "
            f"({multixacts / max(transactions, 1):.2f} per ballot)"
        )
        slru_total: Counter[str] = Counter()
        waits: Counter[str] = Counter()
        for p in runs:
            slru_total.update(p.slru)
            waits.update(p.waits)
        print("    MultiXact SLRU pages: " + ", ".join(f"{k} {v:,}" for k, v in sorted(slru_total.items()) if v))
        samples = sum(waits.values()) or 1
        print(
            "    sessions waiting on: "
            + ", ".join(f"{name} {count / samples:.0%}" for name, count in waits.most_common(6))
        )
    ratio = median([p.tps for p in by_mode["hot"]]) / median([p.tps for p in by_mode["spread"]])
    print(f"  ratio hot/spread: {ratio:.2f}   (goal: at least 0.8)")
    problems = [f"{p.name}: {p.stored} ballots stored, {p.transactions} transactions" for p in phases if
                p.stored < p.transactions]  # fmt: skip
    for problem in problems:
        print(f"  INVALID {problem}")
    _common.summary(
        "hot_lottery",
        valid=not problems,
        figures={
            "hot_tx_per_s": round(median([p.tps for p in by_mode["hot"]])),
            "spread_tx_per_s": round(median([p.tps for p in by_mode["spread"]])),
        },
        ratios={"hot/spread": round(ratio, 2)},
        goals={"hot/spread >= 0.8": ratio >= 0.8},
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
