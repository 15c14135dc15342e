"""Settings for the test suite: the real ones, with test-only defaults.

The tests run against real PostgreSQL and Redis (pytest-django creates the
``test_<name>`` database); only secrets and throttle rates differ.
"""

import os

# The tests' own broker (started by a session fixture in conftest) listens
# here; chosen before Django reads its settings so subprocesses inherit it.
if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
    import socket

    with socket.socket() as _sock:
        _sock.bind(("127.0.0.1", 0))
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{_sock.getsockname()[1]}"
os.environ.setdefault("KAFKA_REQUEST_TIMEOUT_MS", "3000")
os.environ.setdefault("OUTBOX_BACKOFF_MAX_SECONDS", "3")

# A Redis database of the tests' own: they flush it, and must not touch a running platform's.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-insecure-key")
os.environ.setdefault("INTERNAL_CLOSE_TOKEN", "test-internal-token")
os.environ.setdefault("INTERNAL_STAKES_TOKEN", "test-stakes-token-0000")
os.environ.setdefault("INTERNAL_DROPS_TOKEN", "test-drops-token-00000")
os.environ.setdefault("INTERNAL_LOADGEN_TOKEN", "test-loadgen-token-0000")
os.environ.setdefault("API_THROTTLE_USER", "100000/min")
os.environ.setdefault("API_THROTTLE_ANON", "100000/min")
os.environ.setdefault("API_THROTTLE_BALLOTS", "100000/min")
os.environ.setdefault("API_THROTTLE_LOGIN", "100000/min")
os.environ.setdefault("API_THROTTLE_VERIFICATION", "100000/min")
# Tallies (core.tallies) written at once, in the test's own transaction, where a test reads them back.
os.environ.setdefault("TALLY_FLUSH_SECONDS", "0")

from lottery_site.settings import *  # noqa: F403
from lottery_site.settings import CACHES

# Keep test keys apart from a running development platform's.
CACHES["default"]["KEY_PREFIX"] = "lottery-test"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests

# Serve static files (Swagger UI's assets, admin) straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
