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
