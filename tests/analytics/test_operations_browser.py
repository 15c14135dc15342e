"""The operations page in a real headless Chromium: its charts drawn from a short flow, nothing refused or failing.

Debian's ``chromium`` and ``chromium-driver``, as tests/test_browser_csp.py drives them (its fixture,
through this folder's conftest, and its helpers), kept off every network but loopback. The whole test,
flow included, has 2 minutes.
"""

import time

import pytest
from django.urls import reverse

from analytics.services import metrics_refresh
from tests.analytics.flow import short_flow
from tests.test_browser_csp import (
    CHROMEDRIVER,
    CHROMIUM,
    _assert_policy_in_force,
    _console_problems,
    _violations,
    _wait_for,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver"),
]

BUDGET_SECONDS = 120
CHARTS = ["chart-ballots", "chart-fraud", "chart-revenue", "chart-payouts"]

# Each chart's datasets summed, and whether its canvas holds any painted pixel.
READ_CHARTS = """
return arguments[0].map((id) => {
  const canvas = document.getElementById(id);
  const chart = Chart.getChart(canvas);
  const sums = chart.data.datasets.map((set) => [set.label, set.data.reduce((a, b) => a + b, 0)]);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return {id: id, type: chart.config.type, sums: sums, painted: pixels.some((value) => value !== 0)};
});
"""


@pytest.mark.django_db(transaction=True)
def test_the_operations_page_draws_its_charts_from_a_short_flow(
    browser, live_server, kafka_broker, settings, make_player, make_lottery, enter
):
    started = time.monotonic()
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # the live server is plain HTTP
    short_flow(make_player=make_player, make_lottery=make_lottery, enter=enter, settings=settings)
    metrics_refresh()
    make_player(username="ops-person", roles=["operations"])

    # a member of operations logs in, and follows admin's link to the page
    browser.get(f"{live_server.url}/admin/login/")
    _wait_for(browser, "#id_username")[0].send_keys("ops-person")
    browser.find_element("id", "id_password").send_keys("password-for-tests")
    browser.find_element("css selector", "input[type=submit]").click()
    _wait_for(browser, "#operations-link a")[0].click()
    _wait_for(browser, "#ops-charts canvas[data-rendered]", count=len(CHARTS))

    # then every chart is drawn, with the flow's figures
    charts = {chart["id"]: chart for chart in browser.execute_script(READ_CHARTS, CHARTS)}
    assert browser.current_url == f"{live_server.url}{reverse('operations')}"
    assert all(chart["painted"] for chart in charts.values()), charts
    assert dict(charts["chart-ballots"]["sums"]) == {"accepted": 7, "refused": 4}
    assert dict(charts["chart-fraud"]["sums"]) == {"fraud rejections": 1}
    assert dict(charts["chart-revenue"]["sums"]) == {"EUR": 30, "GBP": 7.5}
    assert dict(charts["chart-payouts"]["sums"]) == {"EUR": 27}
    # and the page's other figures are there
    assert _wait_for(browser, "#ops-dlq-open")[0].text == "1"
    assert _wait_for(browser, "#ops-sms-failed")[0].text == "1"
    assert "every hour adds up" in _wait_for(browser, "#ops-reconciliation-status")[0].text
    # with nothing refused by the content policy, and nothing failing in the console
    assert _violations(browser) == []
    assert _console_problems(browser) == []
    _assert_policy_in_force(browser)
    assert time.monotonic() - started < BUDGET_SECONDS
