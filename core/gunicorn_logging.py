"""gunicorn's own lines (its error log and access log) as the platform writes its lines (core.logs).

``gunicorn.conf.py`` names this class as its ``logger_class``. gunicorn
keeps its handlers, its outputs (``errorlog``, ``accesslog``) and its
levels; their formatter becomes ``core.logs.formatter`` with the
``LOG_FORMAT`` of the environment (the master process never reads Django's
settings: a child of its own checks them). The access line is "request_served" with its fields, the same
names as django-structlog's "request_finished": ``request`` ("GET /path?q"),
``code``, ``duration_ms``, ``bytes``, ``remote_addr`` (the peer), ``user_agent``, ``pid`` (the worker's),
``request_id`` (the ``X-Request-ID`` the response carries) and the trace and
span ids that ``core.middleware.RequestLogMiddleware`` left in the environ.
"""

import os
from datetime import timedelta
from typing import Any

from gunicorn import glogging

from core import logs
from core.logs import REQUEST_ID_HEADER, SPAN_ID_ENVIRON, TRACE_ID_ENVIRON


class Logger(glogging.Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # An unknown format: JSON here, and the master stops on the wrong setting as it starts, saying which
        # (gunicorn.conf.py's on_starting).
        formatter = logs.formatter(logs.format_of_environment())
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log.handlers:  # no accesslog
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = {name.lower(): value for name, value in resp.headers}
        self.access_log.info(
            "request_served",
            extra={
                "request": f"{environ['REQUEST_METHOD']} {environ.get('RAW_URI', environ.get('PATH_INFO', ''))}",
                "code": int(status),
                "duration_ms": round(request_time.total_seconds() * 1000, 1),
                "bytes": getattr(resp, "sent", None),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                "pid": os.getpid(),  # which of the workers served it
                "request_id": headers.get(REQUEST_ID_HEADER.lower()),
                "trace_id": environ.get(TRACE_ID_ENVIRON),
                "span_id": environ.get(SPAN_ID_ENVIRON),
            },
        )
