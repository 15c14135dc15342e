"""Liveness and readiness probes (plain Django views: no auth, no throttling)."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kafka import KafkaAdminClient
from redis import Redis

from outbox.pipeline import pipeline_status

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    client = Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _check_kafka() -> None:
    client = KafkaAdminClient(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id=f"{settings.KAFKA_CLIENT_ID}-health",
        request_timeout_ms=2000,
        bootstrap_timeout_ms=2000,
    )
    try:
        client.list_topics()
    finally:
        client.close()


CHECKS: dict[str, Callable[[], None]] = {"database": _check_database, "redis": _check_redis, "kafka": _check_kafka}


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """200 when every dependency of this web process answers; 503 naming the ones that failed.

    The ``pipeline`` section says whether events are moving (``outbox.pipeline``):
    a degraded pipeline is reported with its reasons but keeps the 200, since
    a web process can serve while the relay catches up.
    """
    failed: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # a probe reports any failure; it must not raise
            # The details (hosts, users) go to the log, not to whoever asks.
            logger.warning("readiness check failed: %s: %s", name, error, extra={"check": name})
            failed[name] = type(error).__name__
    pipeline = _pipeline() if "database" not in failed and "redis" not in failed else _PIPELINE_UNKNOWN
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, "pipeline": pipeline}, status=503)
    return JsonResponse({"status": "ok", "checks": sorted(CHECKS), "pipeline": pipeline})


_PIPELINE_UNKNOWN: dict[str, object] = {"status": "unknown", "reasons": ["the database or Redis cannot be asked"]}


def _pipeline() -> dict[str, object]:
    try:
        return pipeline_status().as_json()
    except Exception as error:  # a probe reports any failure; it must not raise
        logger.warning("pipeline status unavailable: %s", error)
        return _PIPELINE_UNKNOWN
