"""The headless browser of tests/test_browser_csp.py, for the operations page's browser test."""

from tests.test_browser_csp import browser  # noqa: F401 (a fixture, found by pytest here)
