"""Reading a process's /metrics as Prometheus would: over HTTP, parsed into samples."""

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int, *, token: str | None = None, timeout: float = 10) -> Samples:
    """GET http://127.0.0.1:port/metrics; fails on anything but 200."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (a local test server)
        return parse(response.read().decode())


def refused_status(port: int) -> tuple[int, bytes]:
    """The status and body of a scrape that is expected to be refused."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


def wait_for_scrape(
    port: int, condition: Callable[[Samples], bool], *, timeout: float = 60, what: str, token: str | None = None
) -> Samples:
    """Scrape until ``condition`` holds (a process that is starting does not answer yet)."""
    deadline = time.monotonic() + timeout
    last: Samples | str = "no answer"
    while True:
        try:
            samples = scrape(port, token=token, timeout=5)
            if condition(samples):
                return samples
            last = samples
        except OSError as error:
            last = f"no answer: {error}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last scrape: {last}"
        time.sleep(0.3)
