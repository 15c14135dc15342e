"""Plumbing shared by the benchmarks: their settings, a throw-away database, timing helpers.

Not a benchmark itself. Each benchmark imports it first (it sits beside them,
so ``python bench/<name>.py`` finds it), calls ``setup_django`` and only then
imports the project's modules.
"""

import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"  # the benchmarks' own Redis database: flushed before and after
HIGH_RATE = "1000000/min"
if str(ROOT) not in sys.path:  # the project's packages (and tests.kafka) import from here
    sys.path.insert(0, str(ROOT))


def bench_env(db_name: str) -> dict[str, str]:
    """The settings every benchmark process (and the server it starts) runs with."""
    return {
        "DJANGO_SETTINGS_MODULE": "lottery_site.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-only-insecure-key",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name}",
        "REDIS_URL": REDIS_URL,
        "API_THROTTLE_USER": HIGH_RATE,
        "API_THROTTLE_ANON": HIGH_RATE,
        "API_THROTTLE_BALLOTS": HIGH_RATE,
    }


def setup_django(db_name: str) -> None:
    """Point this process at the benchmark database and start Django.

    The benchmark's variables override the caller's (a developer's
    DATABASE_URL must never be the one that is dropped). LOG_LEVEL defaults
    to WARNING here, to keep the figures readable; servers started by a
    benchmark keep the application's default.
    """
    os.environ.update(bench_env(db_name))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)  # no collectstatic here
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _admin_connection():
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)


def create_database(db_name: str) -> None:
    """(Re)create an empty database, dropping one left behind by an interrupted run."""
    from psycopg import sql

    with _admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))


def drop_database(db_name: str) -> None:
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    with _admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def flush_redis() -> None:
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def step(message: str) -> None:
    print(f"  .. {message}", flush=True)


def summary(
    name: str,
    *,
    valid: bool,
    figures: dict[str, float | int | str],
    ratios: dict[str, float] | None = None,
    goals: dict[str, bool] | None = None,
) -> None:
    """Print the run's one machine-readable line, the last it prints (``bench/run_all`` reads it).

    ``goals`` maps each goal, as a reader would state it, to whether this run
    met it. An invalid run judges no goal: every one is reported as ``null``,
    never as met.
    """
    judged = {goal: (bool(met) if valid else None) for goal, met in (goals or {}).items()}
    line = {"benchmark": name, "valid": valid, "figures": figures, "ratios": ratios or {}, "goals": judged}
    print(json.dumps(line), flush=True)
