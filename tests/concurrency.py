"""Run callables at the same moment from several threads; run manage.py and Celery workers in processes of their own."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def run_together(*calls: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Start every call at once (behind a barrier); return results or raised exceptions, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as error:  # collected for the test to assert on
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a concurrent call did not finish"
    return results


def process_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a platform process on the test database, Redis and broker."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        **(env or {}),
    }


class _LoggingProcess:
    """A platform process whose stderr is its log: one JSON object per line (core.logs)."""

    process: subprocess.Popen[bytes]
    _err: Any

    def log(self) -> list[dict[str, Any]]:
        """Its log lines so far; fails on a line that is not JSON."""
        return log_lines(os.pread(self._err.fileno(), 1 << 24, 0).decode(errors="replace"))

    def wait_for_log(self, event: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        """Wait until it logs ``event`` (with these field values); that line."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log() if line["event"] == event and fields.items() <= line.items()]
            if found:
                return found[0]
            assert self.process.poll() is None, f"exited with {self.process.returncode} before logging {event!r}"
            assert time.monotonic() < deadline, f"did not log {event!r} {fields} within {timeout} s"
            time.sleep(0.1)


class ManagePy(_LoggingProcess):
    """``manage.py`` in another process, on the test database and broker.

    Its output goes to files, not pipes: a chatty process must never block
    on a full pipe while the test waits for it.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the process)
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=process_env(env),
            stdout=self._out,
            stderr=self._err,
        )

    def wait(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for it to exit; return (exit code, stdout, stderr)."""
        returncode = self.process.wait(timeout=timeout)
        self._out.seek(0)
        self._err.seek(0)
        return returncode, self._out.read(), self._err.read()

    def output(self) -> str:
        """What it wrote to stdout so far (read without moving the file offset it writes at)."""
        return os.pread(self._out.fileno(), 1 << 20, 0).decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until its stdout shows ``text`` (a process under load may take seconds to start)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, f"exited with {self.process.returncode} before writing {text!r}"
            assert time.monotonic() < deadline, f"did not write {text!r} within {timeout} s"
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        """SIGTERM, then wait; a process that outlives ``timeout`` is killed (never left behind) and fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, out, err = self.wait(timeout)
            raise AssertionError(f"did not stop within {timeout} s of SIGTERM; killed.\n{out}\n{err}") from None


def log_lines(text: str) -> list[dict[str, Any]]:
    """A process's log, line by line; fails on a line that is not one JSON object (a partly written last one aside)."""
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # still being written
    parsed = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"a log line that is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


class Worker(_LoggingProcess):
    """A Celery worker process on the test database, Redis and broker, to be killed.

    By default the notifier's: ``queues`` notifications, the solo pool. ``args``
    go to ``celery worker`` as they are (``--pool prefork --concurrency 2``, say);
    ``queues=None`` takes every queue.
    """

    def __init__(self, *args: str, queues: str | None = "notifications", **env: str) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the process)
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        options = [*(["--queues", queues] if queues else []), *([] if "--pool" in args else ["--pool", "solo"])]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "lottery_site", "--quiet", "worker", *options,
             "--loglevel", "INFO", "--without-mingle", "--without-gossip", *args],
            cwd=ROOT,
            env=process_env(env),
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,  # its own process group: a prefork child never outlives the test
        )  # fmt: skip

    def output(self) -> str:
        """What it wrote so far: stdout, then stderr."""
        return self.stdout() + os.pread(self._err.fileno(), 1 << 24, 0).decode(errors="replace")

    def stdout(self) -> str:
        """What it wrote to stdout so far (its log is stderr)."""
        return os.pread(self._out.fileno(), 1 << 24, 0).decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until it says it is ready ("celery@host ready.") to take tasks."""
        deadline = time.monotonic() + timeout
        while not any(line["event"].endswith(" ready.") for line in self.log()):
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.stop()}"
            assert time.monotonic() < deadline, f"not ready within {timeout} s:\n{self.stop()}"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the worker and its pool's children, as when its machine or container dies."""
        self._kill_group()
        self.process.wait(10)

    def stop(self) -> str:
        """SIGTERM (a warm shutdown), then what it wrote: stdout, then stderr.

        Whatever is left of its process group after the main process exits (or
        fails to within 30 s), a pool child stuck in a lock say, is killed.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._kill_group()
        self._out.seek(0)
        self._err.seek(0)
        return f"{self._out.read()}{self._err.read()}"

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # nothing of the group is left
            os.killpg(self.process.pid, signal.SIGKILL)


def CeleryWorker(*args: str, **env: str) -> Worker:
    """A Celery worker on every queue, with ``celery worker`` arguments ``args``."""
    return Worker(*args, queues=None, **env)


def manage_py(*args: str, env: dict[str, str] | None = None) -> ManagePy:
    return ManagePy(*args, env=env)


def run_manage_py(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """``manage.py`` run to the end in another process with exactly ``env``; its stdout.

    Raises with the process's output when it fails (it serves tests and benchmarks alike).
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
