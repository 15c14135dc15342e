"""What each process does once it is running on its own: after gunicorn's fork, in each Celery
worker child, at the start of beat and of the long-running commands.

Telemetry (traces, JSON logs, metrics) must be set up after a fork, never
before: an exporter's thread or a metrics registry set up in the parent
would be shared, or lost, by the children. ``started(service)`` is the one
call each process makes; it is idempotent, so a second entry point in the
same process (wsgi.py after gunicorn's ``post_fork``) changes nothing.

Service names: ``web``, ``worker``, ``beat``, ``relay``, ``consumer``
(and ``cli`` for the one-off commands). ``OTEL_SERVICE_NAME`` overrides the
name, as OpenTelemetry's own convention has it (the SMS worker is a Celery
worker started with ``OTEL_SERVICE_NAME=notifier``).
"""

import gc
import logging
import os
import sys
import threading
from typing import NoReturn

from django.core.exceptions import ImproperlyConfigured

from core import tracing

_lock = threading.Lock()
_service: str | None = None


def service_name() -> str:
    """This process's service name: the one ``started`` was given, or ``cli`` before that."""
    return _service or os.environ.get("OTEL_SERVICE_NAME") or "cli"


def started(service: str) -> None:
    """Set up this process's telemetry as ``service`` (once per process; later calls do nothing)."""
    global _service
    with _lock:
        if _service is not None:
            return
        _service = os.environ.get("OTEL_SERVICE_NAME") or service
    # Each part of the telemetry adds its own set-up here, in this order:
    # logs first (so the others' start-up lines are JSON), then traces, then metrics.
    tracing.setup(_service)
    from core.prometheus import process_started  # after the fork: gunicorn's post_fork runs before Django is set up

    try:
        process_started(service)
    except ImproperlyConfigured as error:  # its metrics port cannot be opened, say
        refuse_to_start(_service, error)
    settled()


# The exit status of a process whose settings are wrong: gunicorn's own for a worker that failed to
# boot, so that its master stops instead of forking a new worker that fails the same way.
CANNOT_START = 3


def settings_or_exit() -> None:
    """Read the settings now; if they cannot be read, ``settings_failed`` (one log line saying why, then exit).

    Called first by gunicorn's master (in a child of its own, ``settings_or_exit_apart``), Celery's
    configuration and wsgi.py; manage.py lets Django read them (its ``--settings``) and calls
    ``settings_failed`` on what escapes before they are read.
    """
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (the first read imports the settings module)
    except Exception as error:
        settings_failed(error)


def settings_failed(error: BaseException) -> NoReturn:
    """The settings could not be read: say why in one CRITICAL line of the log's format, and exit ``CANNOT_START``.

    Django reads its settings at their first use, and they are what sets up
    logging: a wrong value (no ``DJANGO_SECRET_KEY``, a ``LOG_LEVEL`` of no
    level, a ``DATABASE_URL`` that is no URL) ended the process on a raw
    traceback, the one line a log shipper cannot read, when it is the line an
    operator most needs. The line goes to stderr as the platform's handler
    would write it: JSON, or a readable line when ``LOG_FORMAT`` says ``console``.
    """
    from core.logs import format_of_environment, formatter

    reason = str(error) if isinstance(error, ImproperlyConfigured) else f"{type(error).__name__}: {error}"
    record = logging.LogRecord(
        "lottery_site.settings", logging.CRITICAL, __file__, 0, f"not started: {reason}", (), None
    )
    record.reason = reason
    sys.stderr.write(formatter(format_of_environment()).format(record) + "\n")
    sys.stderr.flush()
    raise SystemExit(CANNOT_START)


def settings_or_exit_apart() -> None:
    """``settings_or_exit`` in a forked child, leaving this process without the settings' modules.

    For gunicorn's master: what it imports, every worker it forks inherits, and a
    reload (SIGHUP) would start new workers on the old settings and code.
    """
    child = os.fork()
    if child == 0:
        try:
            settings_or_exit()
        except SystemExit as stop:
            os._exit(stop.code if isinstance(stop.code, int) else CANNOT_START)
        except BaseException:  # a child must never return into the parent's code
            os._exit(CANNOT_START)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(CANNOT_START)


def refuse_to_start(service: str, reason: object) -> NoReturn:
    """A long-running process that cannot start: why, as one CRITICAL line of its log, then exit status 1.

    Not a traceback on stderr: the log shipper reads every line as JSON, and
    this is the line an operator most needs to find.
    """
    logging.getLogger(__name__).critical("%s not started: %s", service, reason, extra={"reason": str(reason)})
    raise SystemExit(1)


def settled() -> None:
    """What the process has loaded so far (modules, settings, apps) stays: the cyclic garbage collector skips it.

    ``gc.freeze()`` moves every object tracked so far to a generation that is
    never collected. A full collection otherwise walks all of them again, a
    pause of a few hundred milliseconds in a web worker, every few hundred
    requests, for nothing: what start-up loaded is never garbage. Called at
    the end of ``started`` and again by gunicorn once a worker has loaded the
    application (``post_worker_init``). Objects made later are collected as usual.
    """
    gc.freeze()
