"""The API keeps its OpenAPI contract: schemathesis against a real server, as anyone, a player and staff.

The server is gunicorn with the production settings (DEBUG off) on a free
port, over a scratch database made for the run and seeded with the demo (an
open lottery, a drawn one with its draw, players with ballots), the tests'
Redis and the tests' Kafka broker, with throttles out of the way. Each run
uses every check, a fixed seed and a fixed number of examples per operation;
the three together must finish within ``BUDGET_SECONDS``. The few places a
check is wrong for this API are configured, with their reasons, in
``schemathesis.toml`` beside this file.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dj_database_url
import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from tests.concurrency import run_manage_py
from tests.kafka import Broker, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
BUDGET_SECONDS = 300  # the three runs together
MAX_EXAMPLES = 25  # per operation and phase
SEED = 20261122
INTERNAL_TOKENS = {
    "INTERNAL_CLOSE_TOKEN": "contract-close-token-0000",
    "INTERNAL_STAKES_TOKEN": "contract-stakes-token-0000",
    "INTERNAL_DROPS_TOKEN": "contract-drops-token-00000",
}


@dataclass(frozen=True)
class Server:
    base_url: str
    tokens: dict[str, str]  # username -> API token


def _admin_connection(config):
    """A connection to the server's ``postgres`` database, to create and drop the scratch one."""
    params = {"host": config["HOST"], "port": config["PORT"], "user": config["USER"], "password": config["PASSWORD"]}
    return psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in params.items() if v})


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own server on loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready in {timeout} s:\n{log.read_text()}")


def _throttle_scopes() -> list[str]:
    rates: dict[str, str] = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]  # type: ignore[assignment]
    return list(rates)


@pytest.fixture(scope="module")
def contract_server(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = dj_database_url.parse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lottery"))
    name = f"{config['NAME']}_contract"
    with _admin_connection(config) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    user = f"{config['USER']}:{config['PASSWORD']}@" if config["PASSWORD"] else f"{config['USER']}@"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "lottery_site.settings",
        "DATABASE_URL": f"postgres://{user}{config['HOST']}:{config['PORT']}/{name}",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "contract-run-only-secret-key",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_COOKIES": "false",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        **INTERNAL_TOKENS,
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "ERROR",
        # Throttles out of the way: every rate the platform has (API_THROTTLE_<SCOPE>).
        **{f"API_THROTTLE_{scope.upper()}": "1000000/min" for scope in _throttle_scopes()},
    }
    server: subprocess.Popen[bytes] | None = None
    try:
        run_manage_py("migrate", "--noinput", "-v", "0", env=env)
        run_manage_py("seed_demo", env=env)
        tokens_json = run_manage_py(
            "shell",
            "-v",
            "0",
            "-c",
            "import json\n"
            "from rest_framework.authtoken.models import Token\n"
            "from entries.models import Player\n"
            "print(json.dumps({p.username: Token.objects.get_or_create(user=p)[0].key for p in Player.objects.all()}))",
            env=env,
        )
        tokens = json.loads(tokens_json.strip().splitlines()[-1])
        port = free_port()
        log = tmp_path_factory.mktemp("contract") / "gunicorn.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "lottery_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base_url}/health/ready", server, log)
        yield Server(base_url, tokens)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        with _admin_connection(config) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _schemathesis(server: Server, *headers: str, workdir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    command = [
        executable,
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.base_url}/api/schema/?format=json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    for header in headers:
        command += ["--header", header]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_api_keeps_its_openapi_contract_for_anyone_a_player_and_staff(contract_server, tmp_path):
    identities = {
        "anonymous": (),
        "player dave (token)": (f"Authorization: Token {contract_server.tokens['dave']}",),
        "staff admin (superuser token)": (f"Authorization: Token {contract_server.tokens['admin']}",),
    }
    deadline = time.monotonic() + BUDGET_SECONDS
    failures = []
    for identity, headers in identities.items():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the contract runs took more than {BUDGET_SECONDS} s before {identity}"
        try:
            done = _schemathesis(contract_server, *headers, workdir=tmp_path, timeout=remaining)
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout
            pytest.fail(f"schemathesis as {identity} overran the {BUDGET_SECONDS} s budget:\n{output}")
        if done.returncode != 0:
            failures.append(f"===== as {identity}: exit code {done.returncode}\n{done.stdout}\n{done.stderr}")
    assert not failures, "\n".join(failures)
