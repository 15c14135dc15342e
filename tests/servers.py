"""A real web server for tests that drive the platform over HTTP: gunicorn on a free port, on the test database."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from tests.kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    log: Path


@contextmanager
def gunicorn_server(
    log: Path, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """gunicorn (the repository's gunicorn.conf.py) with the tests' settings, database, Redis and broker.

    Stopped with SIGTERM when the block ends; its output goes to ``log``.
    """
    port = free_port()
    db = settings.DATABASES["default"]
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{base_url}/health/live", timeout=2) as answer:  # noqa: S310 (loopback)
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"gunicorn did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield LiveServer(base_url, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
