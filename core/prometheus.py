"""Each process's Prometheus metrics: what a scrape answers, where, and across forked children.

Counters and histograms are defined beside the code they count (each app's
``metrics.py``) and live in prometheus_client's default registry, in the
process that did the work. A scrape answers with:

- **web** (``/metrics``, ``core.metrics``): every gunicorn worker's counts
  added up, plus the *platform* gauges, read from PostgreSQL and Redis at
  scrape time (outbox backlog, heartbeats, dead letters, SMS backlog): the
  same truth whichever process asks, exported by the one process that is
  always up, not by the relay or the consumer whose trouble they show.
  Apps add them with ``platform_collector`` in their ``AppConfig.ready``.
- **worker** (``WORKER_METRICS_PORT``, served by the Celery worker's main
  process): every pool child's task counts added up, and the queue depths.
- **relay**, **consumer** (``RELAY_METRICS_PORT``,
  ``STAKES_CONSUMER_METRICS_PORT``): the process's own metrics.

The side ports bind ``METRICS_BIND_ADDRESS`` (127.0.0.1 unless set) and
answer the callers ``/metrics`` answers (``METRICS_ALLOWED_CIDRS`` or
``METRICS_TOKEN``).

Forked children (gunicorn workers, Celery's prefork pool) share one
directory, ``PROMETHEUS_MULTIPROC_DIR``, where prometheus_client keeps each
child's values in files: it is wiped when the parent starts (gunicorn's
``on_starting``, the worker's ``worker_init``), a child's live gauges go with
it when it exits (``mark_process_dead``), and a scrape adds the files up.
Unset, each process answers for itself alone (runserver, tests, a solo
worker). gunicorn.conf.py makes a directory of its own when none is given.
"""

import bisect
import glob
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, make_wsgi_app, multiprocess
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Platform-wide gauges read at scrape time: web's /metrics serves them (apps fill this in AppConfig.ready).
PLATFORM: list[Collector] = []


def platform_collector(collector: Collector) -> None:
    """Serve ``collector`` on web's /metrics (once per class: ready() may run twice in tests)."""
    if not any(type(known) is type(collector) for known in PLATFORM):
        PLATFORM.append(collector)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def wipe_multiprocess_dir(directory: str) -> None:
    """Forget the values of an earlier run (a parent does this before it forks its children)."""
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def process_exited(pid: int) -> None:
    """A forked child is gone: its live gauges go with it (its counters stay in the sums)."""
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class _ThisProcess(Collector):
    """The default registry of this process, as one collector of a scrape's registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(collectors: Iterable[Collector] = (), *, children: bool = True) -> CollectorRegistry:
    """What a scrape of this process answers: its metrics (every child's, with ``children`` in multiprocess mode)
    and ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if children and directory:
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return registry


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe`` for each amount, in one increment per bucket rather than two per amount.

    A relay batch observes up to OUTBOX_BATCH_SIZE lags; in multiprocess mode
    each increment is a locked write to a file, and per amount that would cost
    the relay a tenth of its throughput. Same result as observing one by one.
    """
    counts = [0] * len(histogram._upper_bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect.bisect_left(histogram._upper_bounds, amount)] += 1  # the first bound >= amount
        total += amount
    if not any(counts):
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


# --- Who may scrape -------------------------------------------------------------


def address_may_scrape(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    if address is None:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in settings.METRICS_ALLOWED_CIDRS)


def token_may_scrape(authorization: str) -> bool:
    """``Authorization: Bearer METRICS_TOKEN``, compared in constant time; never with no token set."""
    import hmac

    expected = settings.METRICS_TOKEN
    scheme, _, given = authorization.partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def refusal() -> dict[str, Any]:
    """What a caller who may not scrape gets (403), in the API's error shape."""
    from core.api import error_body

    return error_body("permission_denied", "Metrics are for the monitoring network or its token.")


# A scrape and a fork never overlap. A process that serves its metrics from a thread and forks (a
# prefork worker's main process) would otherwise copy into the child any lock the scrape thread held
# at that instant (the Redis connection pool's, for the queue depths), and the child would wait on it
# for ever. The fork waits for the scrape in hand to end; the child starts with the lock free.
_scrape_lock = threading.Lock()
os.register_at_fork(
    before=_scrape_lock.acquire, after_in_parent=_scrape_lock.release, after_in_child=_scrape_lock.release
)


def _guarded(app: Callable[..., Any]) -> Callable[..., Any]:
    """The metrics app, for the callers ``/metrics`` answers; 403 in the API's error shape for the others."""
    from core.clients import parse_ip

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        address = parse_ip(environ.get("REMOTE_ADDR"))
        if address_may_scrape(address) or token_may_scrape(environ.get("HTTP_AUTHORIZATION", "")):
            with _scrape_lock:  # the page is rendered whole inside the call
                return app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "application/json")])
        return [json.dumps(refusal()).encode()]

    return guarded


_servers: dict[int, WSGIServer] = {}


def serve(port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` on ``METRICS_BIND_ADDRESS``:``port`` from a daemon thread (once per port)."""
    if port in _servers:
        return _servers[port]
    address = settings.METRICS_BIND_ADDRESS
    try:
        server = make_server(
            address, port, _guarded(make_wsgi_app(registry)), ThreadingWSGIServer, handler_class=_SilentHandler
        )
    except OSError as error:
        raise ImproperlyConfigured(f"metrics port {address}:{port} cannot be opened: {error}") from error
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    _servers[port] = server
    logger.info("metrics on http://%s:%d/metrics", address, port)
    return server


# --- Per process set-up (core.process.started, lottery_site.celery) -----------


def process_started(role: str) -> None:
    """The metrics part of ``core.process.started``: the side port of the processes without a web server."""
    if role not in ("relay", "consumer"):
        return  # web answers on /metrics; a worker's port is its main process's (worker_started)
    port = settings.RELAY_METRICS_PORT if role == "relay" else settings.STAKES_CONSUMER_METRICS_PORT
    if port:
        serve(port, scrape_registry(children=False))


def worker_started(*, prefork: bool, collectors: Iterable[Collector]) -> None:
    """The Celery worker's main process, before it forks its pool: a fresh directory, and its port."""
    directory = multiprocess_dir()
    port = settings.WORKER_METRICS_PORT
    if prefork and port and not directory:
        raise ImproperlyConfigured(
            f"WORKER_METRICS_PORT with the prefork pool needs {MULTIPROC_DIR_VARIABLE} (a directory of this worker's "
            "own), or each pool child's counts would be lost; or run the worker with --pool solo or threads."
        )
    if directory and prefork:
        wipe_multiprocess_dir(directory)
    if port:
        # A solo or threads pool runs the tasks in this process: its own values are the worker's.
        serve(port, scrape_registry(collectors, children=prefork))
