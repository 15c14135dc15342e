"""Log lines: one JSON object per line in every process, or a readable line with ``LOG_FORMAT=console``.

The apps log with the standard library (``logger.info("lottery opened",
extra={"lottery_id": ...})``), as do Django, Celery, kafka-python and
gunicorn; django-structlog's request and task lines come from structlog.
Both go through the one handler on stderr and its ``ProcessorFormatter``,
so they come out alike: the keys below first, then the line's own fields
(the ``extra`` of a standard-library call, the keyword arguments of a
structlog one, and whatever is bound to the context).

- ``timestamp`` (ISO 8601, UTC), ``level``, ``service`` (``core.process``:
  web, worker, beat, relay, consumer, cli), ``logger``, ``event``;
- ``trace_id`` and ``span_id`` of the OpenTelemetry span current when the
  line was logged (32 and 16 hex digits), null outside a span;
- ``request_id`` of the HTTP request being served, or of the request that
  queued the task being run (``core.middleware.RequestLogMiddleware``, the
  Celery task headers), null elsewhere.

Context is bound with ``structlog.contextvars`` (``bind_contextvars``,
``bound_contextvars``): django-structlog binds ``request_id``, ``user_id``
and ``ip`` for a request and ``task_id`` for a task, the stake consumer its
topic; a line's own fields win over the context's.

Lines that every sweep would repeat (Celery's "task received", "task
succeeded", beat's "sending due task") are DEBUG here, not INFO: at INFO a
process says what it did, not that it looked (docs/observability.md, "Logs").
"""

import json
import logging
import logging.config
import os
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from datetime import date, datetime
from typing import Any

import structlog
from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace

from core.process import service_name

FORMATS = ("json", "console")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The keys every line starts with, in this order (JSON); the rest follow as they came.
FIRST_KEYS = ("timestamp", "level", "service", "logger", "event", "trace_id", "span_id", "request_id")

EventDict = MutableMapping[str, Any]

REQUEST_ID_HEADER = "X-Request-ID"
# Where gunicorn's access line (core.gunicorn_logging) finds the ids of a request whose span has ended
# (core.middleware.RequestLogMiddleware leaves them in the WSGI environ).
TRACE_ID_ENVIRON, SPAN_ID_ENVIRON = "lottery.trace_id", "lottery.span_id"


def add_service(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    event_dict["service"] = service_name()
    return event_dict


def add_trace_ids(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """The current span's trace and span ids; ids a line brings itself (gunicorn's access line) are kept."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    else:
        event_dict.setdefault("trace_id", None)
        event_dict.setdefault("span_id", None)
    event_dict.setdefault("request_id", None)
    return event_dict


def _drop_formatting_leftovers(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    # Set on the record by another handler's formatter (pytest's, say), never an ``extra`` (logging forbids both).
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def _plain_values(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """Django's own lines carry the request object in ``extra``: write it as django-structlog does, "GET /path"."""
    for key, value in event_dict.items():
        if hasattr(value, "get_full_path") and hasattr(value, "method"):
            event_dict[key] = f"{value.method} {value.get_full_path()}"
    return event_dict


def _first_keys_first(logger: Any, method: str, event_dict: EventDict) -> dict[str, Any]:
    ordered = {key: event_dict.pop(key) for key in FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _without_nulls(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    return {key: value for key, value in event_dict.items() if value is not None}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)  # Decimal, UUID, an exception: their text


def _dumps(event_dict: Any, **kwargs: Any) -> str:
    return json.dumps(event_dict, default=_json_default, ensure_ascii=False, separators=(",", ":"))


# Run on every line, structlog's and the standard library's alike.
SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    add_service,
    add_trace_ids,
]


def format_of_environment() -> str:
    """``LOG_FORMAT`` as the environment gives it, for lines written without Django's settings (gunicorn's
    master, a process whose settings cannot be read): one that is no format gives JSON, the default, and
    the settings refuse it, saying so."""
    fmt = (os.environ.get("LOG_FORMAT") or "json").strip().lower()
    return fmt if fmt in FORMATS else "json"


def formatter(fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler: a JSON object per line, or (``console``) a readable line."""
    if fmt not in FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "console":
        tail: list[Any] = [
            _without_nulls,
            # No locals in a traceback (a local may hold a secret): the plain one.
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,
            _first_keys_first,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_formatting_leftovers, *SHARED_PROCESSORS],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _plain_values, *tail],
    )


class RoutineLines(logging.Filter):
    """Celery's line for every task received and succeeded, and beat's for every task sent: DEBUG, not INFO.

    Beat sends the relay sweep every few seconds and a handful of sweeps
    every minute; at INFO each would write three or four lines that say
    only that it ran. A task's own lines say what it did; its failures and
    retries keep their levels.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

        self.routine = {
            ("celery.worker.strategy", LOG_RECEIVED),
            ("celery.app.trace", LOG_SUCCESS),
            ("celery.beat", "Scheduler: Sending due task %s (%s)"),
        }

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and (record.name, record.msg) in self.routine:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class RepeatedBrokerLines(logging.Filter):
    """kafka-python's warnings and errors, each kind once a minute; its repeats meanwhile held back.

    While a broker is down, kafka-python logs each failed connection and its
    backoff, several lines a second in every process that talks to Kafka (the
    relay, the stake consumer, a worker running relay runs), where the
    platform's own WARNING already says that Kafka is unavailable. A kind is
    the logger and the message's text before its arguments. The first line
    of a kind passes; the same kind again within ``WINDOW_SECONDS`` is held
    back (at ``LOG_LEVEL=DEBUG`` every line shows); the next one to pass
    carries ``repeated``, how many were held back. A filter of the handler,
    which decides for itself: a logger's own filter would not see its
    children's records, and the record is left as it came for other handlers.
    """

    WINDOW_SECONDS = 60.0
    MAX_KINDS = 1000  # a message built with its values (no arguments) makes a kind each: forget them past this

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._passed: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}
        self._lock = threading.Lock()  # kafka-python logs from its own threads too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not (record.name == "kafka" or record.name.startswith("kafka.")):
            return True
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        kind, now = (record.name, record.msg), time.monotonic()
        with self._lock:
            passed = self._passed.get(kind)
            if passed is None or now - passed >= self.WINDOW_SECONDS:
                if len(self._passed) >= self.MAX_KINDS:
                    self._passed.clear()
                    self._held.clear()
                self._passed[kind] = now
                held = self._held.pop(kind, 0)
                if held:
                    record.repeated = held
                return True
            self._held[kind] = self._held.get(kind, 0) + 1
        return False


class FailedRequestOnce(logging.Filter):
    """A request that raised is logged once: django-structlog's ``request_failed``, not Django's line as well.

    Django logs an uncaught exception as ``django.request`` "Internal Server
    Error: <path>" with its traceback, just after django-structlog's
    ``request_failed`` has logged the same exception with the request's ids:
    the traceback twice, the copy without the ids. That copy is held back
    when its exception is the one ``request_failed`` recorded on the request
    (django-structlog keeps it there until the response is logged; its
    receiver of ``got_request_exception`` logs any request that raised, even
    past its middleware). A 5xx answer that raised nothing keeps Django's
    line. A filter of the handler: the record itself is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "django.request" or not record.exc_info or record.exc_info[1] is None:
            return True
        request = getattr(record, "request", None)
        return getattr(request, "_raised_exception", None) is not record.exc_info[1]


# What a task inherits from the context that queued it: the request's id (and the queuing task's, as parent).
TASK_INHERITED_KEYS = ("request_id", "parent_task_id")


def task_context_to_send(context: dict[str, Any], **kwargs: Any) -> None:
    """django-structlog's ``modify_context_before_task_publish``: only the ids above travel in the task's headers.

    The rest of a context (the ids a request or a task bound for its own
    lines) is not the queued task's.
    """
    for key in list(context):
        if key not in TASK_INHERITED_KEYS:
            del context[key]


class TaskLogContext:
    """A worker's receivers of django-structlog: each task's lines carry ``task_id`` and what it inherited.

    django-structlog's app connects the publishing side in every process (the
    ``__django_structlog__`` task header). Here, in a worker: the context
    from that header is bound when a task starts (with ``task_id``) and
    cleared when it ends, so lines between tasks carry none; retries,
    revocations and unknown tasks are logged. Not its failure line: Celery's
    own (``celery.app.trace``, with the traceback) says it, inside the
    task's context.
    """

    def connect(self) -> None:
        from celery.signals import (
            task_postrun,
            task_prerun,
            task_rejected,
            task_retry,
            task_revoked,
            task_success,
            task_unknown,
        )
        from django_structlog.celery.receivers import CeleryReceiver

        self.receiver = CeleryReceiver()  # held here: Celery's signals keep weak references
        task_prerun.connect(self.task_started)
        task_retry.connect(self.receiver.receiver_task_retry)
        task_success.connect(self.receiver.receiver_task_success)
        task_revoked.connect(self.receiver.receiver_task_revoked)
        task_unknown.connect(self.receiver.receiver_task_unknown)
        task_rejected.connect(self.receiver.receiver_task_rejected)
        task_postrun.connect(self.task_ended)

    def task_started(self, task_id: str, task: Any, **kwargs: Any) -> None:
        if not task.request.is_eager:  # a task run in the caller's thread (apply) keeps the caller's context
            self.receiver.receiver_task_prerun(task_id, task, **kwargs)

    def task_ended(self, task: Any, **kwargs: Any) -> None:
        if not task.request.is_eager:
            structlog.contextvars.clear_contextvars()


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """The ``LOGGING`` setting: one handler on stderr with ``formatter(fmt)``, the root at ``level``."""
    if level.upper() not in LEVELS:
        raise ImproperlyConfigured(f"LOG_LEVEL={level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}")
    routine = {"filters": ["routine"]}
    # kafka-python says INFO at every connection, and the relay and the consumer check their topics with a new
    # admin connection every KAFKA_TOPICS_CHECK_SECONDS: a score of lines each time. Shown at DEBUG; warnings always.
    # Its group coordinator's INFO lines (joined, partitions assigned) come once per rebalance, and stay. Its warnings
    # and errors (the coordinator's too) repeat several times a second while a broker is down: each kind once a
    # minute (RepeatedBrokerLines).
    # django-axes's banner (its version and lockout mode) is shown at DEBUG too: logged as the apps load in every
    # process, before the process has named itself (core.process.started), it would say service "cli" in the
    # relay, the consumer, the worker and beat. Its failed logins and lockouts come from other loggers.
    quiet = level.upper() if level.upper() == "DEBUG" else max(level.upper(), "WARNING", key=logging.getLevelName)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "core.logs.formatter", "fmt": fmt}},
        "filters": {
            "routine": {"()": "core.logs.RoutineLines"},
            "repeated_broker_lines": {"()": "core.logs.RepeatedBrokerLines"},
            "failed_request_once": {"()": "core.logs.FailedRequestOnce"},
        },
        "handlers": {
            # sys.__stderr__: a Celery worker replaces sys.stderr with a proxy that logs what is written to it.
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.__stderr__",
                "filters": ["repeated_broker_lines", "failed_request_once"],
            },
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "django.db.backends": {"level": "INFO"},  # every SQL statement at DEBUG otherwise
            "celery.worker.strategy": routine,
            "celery.app.trace": routine,
            "celery.beat": routine,
            "kafka": {"level": quiet},
            "kafka.coordinator": {"level": level.upper()},
            "axes.apps": {"level": quiet},
        },
    }


def configure(config: Mapping[str, Any]) -> None:
    """``LOGGING_CONFIG``: structlog, then the standard library's logging (Django calls it at ``django.setup()``).

    Celery's ``setup_logging`` signal calls it too (``lottery_site.celery``), so Celery keeps its hands off.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(dict(config))
    logging.captureWarnings(True)  # a Python warning is a line like the others (logger py.warnings), not raw text


def _celery_said(msg: str, f: Any = None) -> None:
    text = msg.strip()
    # A warm shutdown is routine (a deploy); the rest (cold shutdown, Ctrl+C, the SIGUSR1 dump) someone asked for.
    level = logging.INFO if "Warm shutdown" in text else logging.WARNING
    logging.getLogger("celery.apps.worker").log(level, text)


def celery_notices_to_the_log() -> None:
    """The Celery worker's own notices become log lines like the others, instead of raw text on stdout.

    From its signal handlers the worker prints a few notices straight to
    stdout, past logging: "worker: Warm shutdown (MainProcess)" on SIGTERM,
    the cold-shutdown and Ctrl+C warnings, the thread dump of SIGUSR1. Each
    was the one line of a stopping worker that was not JSON. Celery looks its
    ``safe_say`` up when it calls it, so replacing it here routes them all
    (logger ``celery.apps.worker``: the warm shutdown at INFO, the others at
    WARNING, so that they show at any LOG_LEVEL a worker is run with). Celery
    writes from the same signal handlers, to a stream as well; this only
    changes which one and its form.
    """
    from celery.apps import worker

    worker.safe_say = _celery_said  # type: ignore[attr-defined]  # not in the stubs
