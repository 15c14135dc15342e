"""A PostgreSQL cluster of a test's own, which the test may restart without touching the machine's."""

import os
import socket
import subprocess
import uuid
from pathlib import Path

import psycopg

from tests.concurrency import run_manage_py


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnPostgres:
    """``pg_createcluster`` on a free port (trust auth), with the platform's schema migrated into ``lottery``."""

    def __init__(self) -> None:
        self.version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.port = _free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/lottery"

    def start(self, env: dict[str, str] | None = None) -> "OwnPostgres":
        """Create, start and migrate it; ``env`` is the migrating process's (default: this one's, test settings)."""
        subprocess.run(
            [
                "/usr/bin/pg_createcluster",
                self.version,
                self.name,
                "-p",
                str(self.port),
                "--start",
                "--",
                "--auth=trust",
            ],
            check=True,
            capture_output=True,
        )
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE lottery")
        environment = {"DJANGO_SETTINGS_MODULE": "tests.settings", **os.environ, **(env or {})}
        environment["DATABASE_URL"] = self.url
        try:
            run_manage_py("migrate", "--no-input", env=environment, timeout=180)
        except BaseException:
            self.drop()
            raise
        return self

    def restart(self) -> None:
        subprocess.run(["/usr/bin/pg_ctlcluster", self.version, self.name, "restart", "-m", "fast"], check=True)

    def drop(self) -> None:
        subprocess.run(["/usr/bin/pg_dropcluster", self.version, self.name, "--stop"], check=False, capture_output=True)

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()
