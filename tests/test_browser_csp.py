"""Swagger UI and admin in a real headless Chromium under the content security policy.

They must render and work with nothing refused by the policy: every
``securitypolicyviolation`` event and every console message is collected
from before the page's first script. Needs Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them); the browser is kept off any
network but this machine's loopback.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entries.models import Player

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    # On a developer's machine without a browser the test is skipped; CI installs one and never skips it.
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true",
        reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
    ),
]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-pings",
    # Nothing but loopback: names other than localhost resolve to nothing, other traffic goes to a closed port.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--proxy-server=http://127.0.0.1:9",
    "--window-size=1280,1024",
]

# Runs before any script of each page; the content policy does not apply to it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__violations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
        yield driver
    finally:
        driver.quit()


def _wait_for(driver: Any, css: str, *, count: int = 1) -> list[Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(
        lambda d: (found := d.find_elements(By.CSS_SELECTOR, css)) and len(found) >= count and found
    )


def _click(driver: Any, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element)


def _violations(driver: Any) -> list[str]:
    return list(driver.execute_script("return window.__violations"))


def _assert_policy_in_force(driver: Any) -> None:
    """The page's policy refuses an inline script: so what ran above ran under it."""
    ran = driver.execute_script(
        "const probe = document.createElement('script');"
        "probe.textContent = 'window.__inlineProbe = true;';"
        "document.head.appendChild(probe);"
        "return window.__inlineProbe === true;"
    )
    assert ran is False
    _wait_until(driver, lambda d: any(v.startswith("script-src-elem blocked inline") for v in _violations(d)))


def _wait_until(driver: Any, condition: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(condition)


def _console_problems(driver: Any) -> list[str]:
    entries = driver.get_log("browser")
    problems = [e["message"] for e in entries if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]
    return [message for message in problems if "/favicon.ico " not in message]  # admin has none; the browser asks


@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_the_api_under_the_policy(browser, live_server):
    # when a person opens the docs
    browser.get(f"{live_server.url}/api/docs/")

    # then Swagger UI has fetched the schema and drawn the API's title and its operations
    title = _wait_for(browser, ".swagger-ui .info .title")[0]
    assert "Lottery platform API" in title.text
    operations = _wait_for(browser, ".opblock", count=10)
    assert any("/api/v1/lotteries/{lottery_id}/ballots" in op.text for op in operations)
    # and the policy refused nothing, and nothing failed
    assert _violations(browser) == []
    assert _console_problems(browser) == []
    _assert_policy_in_force(browser)
    # with the page's own rules applied, from a file rather than an inline style
    assert browser.execute_script("return getComputedStyle(document.body).marginTop") == "0px"


@pytest.mark.django_db(transaction=True)
def test_swagger_ui_try_it_out_calls_the_api_under_the_policy(browser, live_server):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/api/docs/")
    _click(browser, _wait_for(browser, "#operations-v1-v1_lotteries_list .opblock-summary-control")[0])
    operation = _wait_for(browser, "#operations-v1-v1_lotteries_list.is-open")[0]

    _click(browser, operation.find_element(By.CSS_SELECTOR, ".try-out__btn"))
    _click(browser, _wait_for(browser, "#operations-v1-v1_lotteries_list .execute")[0])

    status = _wait_for(browser, "#operations-v1-v1_lotteries_list .live-responses-table .response .response-col_status")
    assert status[0].text.strip() == "200"
    assert _violations(browser) == []
    assert _console_problems(browser) == []
    _assert_policy_in_force(browser)


@pytest.mark.django_db(transaction=True)
def test_admin_logs_in_and_edits_under_the_policy(browser, live_server, settings):
    from selenium.webdriver.common.by import By

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # the live server is plain HTTP
    staff = Player.objects.create_superuser(username="boss", email="boss@example.com", password="boss-password")

    # a person logs in through the form
    browser.get(f"{live_server.url}/admin/login/")
    _wait_for(browser, "#id_username")[0].send_keys("boss")
    browser.find_element(By.ID, "id_password").send_keys("boss-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert "Site administration" in _wait_for(browser, "#content h1")[0].text

    # and opens a change form, whose scripts run (they build the two-list choosers of groups and permissions)
    browser.get(f"{live_server.url}/admin/entries/player/{staff.pk}/change/")
    _wait_for(browser, ".selector-chooser", count=2)
    assert _violations(browser) == []
    assert _console_problems(browser) == []
    _assert_policy_in_force(browser)
