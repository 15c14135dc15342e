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
    """Read the settings now; if one is wrong, say which in one CRITICAL line of the log's format, and exit.

    Django reads its settings at their first use, and they are what sets up
    logging: a wrong value (no ``DJANGO_SECRET_KEY``, a ``LOG_LEVEL`` of no
    level) ended the process on a raw traceback, the one line a log shipper
    cannot read, when it is the line an operator most needs. The line goes to
    stderr as the platform's handler would write it: JSON, or a readable line
    when ``LOG_FORMAT`` says ``console``. Exit status ``CANNOT_START``. Called
    first by manage.py, web's WSGI module and Celery's configuration.
    """
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (the first read imports the settings module)
    except ImproperlyConfigured as error:
        from core.logs import formatter

        fmt = "console" if os.environ.get("LOG_FORMAT", "").strip().lower() == "console" else "json"
        record = logging.LogRecord("lottery_site.settings", logging.CRITICAL, __file__, 0, "", (), None)
        record.msg = f"not started: {error}"
        record.reason = str(error)
        sys.stderr.write(formatter(fmt).format(record) + "\n")
        sys.stderr.flush()
        raise SystemExit(CANNOT_START) from None


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
