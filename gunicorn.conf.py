"""gunicorn's settings for the web service: ``gunicorn --config gunicorn.conf.py`` (the Dockerfile's command).

gunicorn also reads this file by itself when started from this directory.
Address, workers and threads come from the environment; the request limits
below are enforced by gunicorn before Django sees the request (docs/api.md,
"What is refused before Django sees it"). Any setting can still be
overridden on the command line or in ``GUNICORN_CMD_ARGS``.
"""

import os
import shutil
import tempfile
from typing import Any

wsgi_app = "lottery_site.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"]
workers = int(os.environ.get("GUNICORN_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
# Access log on stdout; GUNICORN_ACCESS_LOG="" turns it off (the benchmarks do).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# gunicorn's own lines (its error log, the access log) as JSON like every other line (core.logs).
logger_class = "core.gunicorn_logging.Logger"
# The master's own lines (booting a worker, a worker's timeout) name the service its workers serve.
os.environ.setdefault("OTEL_SERVICE_NAME", "web")
# No gunicornc control socket (gunicorn 25.1 and later make one in $HOME, which
# the image's user does not have, and which two servers on one machine would share).
control_socket_disable = True

# Refused by gunicorn itself with its own short plain-text answer: 414 for the
# request line, 431 for the header fields (older gunicorn releases say 400).
# A request line (method, path and query string, version) longer than this;
# the API's longest are a few hundred bytes.
limit_request_line = 4094
# More header fields than this (browsers send about 15, a proxy adds a few).
limit_request_fields = 50
# One header field, name and value, longer than this (a session cookie is far shorter).
limit_request_field_size = 8190


# Prometheus' multiprocess mode (core.prometheus): each worker keeps its metrics in files of this directory,
# and /metrics adds every worker's up, whichever worker answers. PROMETHEUS_MULTIPROC_DIR names it;
# unset, a fresh temporary one is made here (and removed at exit). Set before the workers fork and import
# prometheus_client, which reads it once.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lottery-web-metrics-")


def on_starting(server: object) -> None:
    """Before the first worker: the settings are read, and the values of an earlier run are forgotten.

    A wrong setting stops the master here, with one log line saying which (read in a child of its own,
    ``core.process.settings_or_exit_apart``, so that a reload still reads them afresh): left to the
    workers, each would fail to boot, and two of them failing at once crash gunicorn's halt.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")
    from core.process import settings_or_exit_apart

    try:
        settings_or_exit_apart()
    except SystemExit:
        on_exit(server)  # gunicorn does not call it when on_starting stops the master
        raise
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server: object, worker: Any) -> None:
    """A worker exited: its live gauges go with it (its counts stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_fork(server: object, worker: object) -> None:
    """Each worker sets up its own telemetry after the fork (core.process), before it loads the application."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")  # the set-up reads the settings
    from django.conf import settings
    from django.utils.log import configure_logging

    from core.process import started

    # The platform's logging before the set-up, whose lines ("tracing on as web", a failure) are then JSON like
    # the rest; Django's own set-up, as the worker loads the application, configures it once more.
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    started("web")


def post_worker_init(worker: object) -> None:
    """The worker has loaded the application: what it loaded is left out of garbage collection (core.process)."""
    from core.process import settled

    settled()
