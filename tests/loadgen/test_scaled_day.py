"""A simulated day of the load generator against a live platform, scored against its ground truth.

The platform is real: gunicorn on a free port (the tests' database, Redis
and broker), a Celery worker that opens, closes and draws the drops on their
timers. ``manage.py loadgen`` runs in its own process and reaches the
platform over HTTP only; a client polls ``GET /api/v1/stats`` meanwhile.
Everything asserted is read from the platform's own records (its ballots,
its lotteries) and its ground-truth API, beside the generator's summary.
"""

import http.client
import json
import math
import threading
import time
from dataclasses import dataclass, field
from functools import reduce
from operator import or_ as operator_or
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db.models import Q
from rest_framework.authtoken.models import Token

from entries.models import Ballot
from entries.roles import ROLES
from loadgen.models import AnomalyKind, InjectedAnomaly
from lotteries.models import Lottery
from lottery_site.celery import app
from tests.concurrency import manage_py
from tests.servers import gunicorn_server
from tests.sms import fast_gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DAY_MINUTES = 1440
TIME_SCALE = 1800  # a day in 48 s
SEED = "scaled-day-2"  # a seed whose day holds at least one low-participation drop and one burst
QUIET = {"GUNICORN_ACCESS_LOG": "", "LOG_LEVEL": "WARNING"}  # the server under load: no access line, no info


def binomial_interval(n: int, p: float, confidence: float = 0.99) -> tuple[int, int]:
    """The central ``confidence`` interval of Binomial(n, p): counts below or above it have at most (1-c)/2 each."""
    tail = (1 - confidence) / 2

    def pmf(k: int) -> float:
        return math.exp(
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * math.log(p)
            + (n - k) * math.log(1 - p)
        )

    cumulative, low = 0.0, 0
    for k in range(n + 1):
        cumulative += pmf(k)
        if cumulative > tail:
            low = k
            break
    cumulative, high = 0.0, n
    for k in range(n, -1, -1):
        cumulative += pmf(k)
        if cumulative > tail:
            high = k
            break
    return low, high


@dataclass
class StatsPoller:
    """A client reading the stats endpoint in a loop, on one keep-alive connection, as a dashboard would."""

    base_url: str
    every: float = 0.1
    answers: list[tuple[int, int | None, str | None]] = field(default_factory=list)  # status, anomaly id, Retry-After
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "StatsPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        while not self._stop.is_set():
            connection.request("GET", "/api/v1/stats?kind=drop&page_size=5")
            answer = connection.getresponse()
            body = json.loads(answer.read())
            anomaly = body["error"]["details"].get("anomaly_id") if answer.status == 506 else None
            self.answers.append((answer.status, anomaly, answer.getheader("Retry-After")))
            time.sleep(self.every)


@pytest.fixture
def platform(kafka_broker, tmp_path):
    fast_gateway()  # no SMS latency: the draws' messages never hold the worker
    with (
        gunicorn_server(tmp_path / "gunicorn.log", env=QUIET) as server,
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10),
    ):
        yield server


def run_loadgen(base_url: str, *args: str, timeout: float = 240) -> tuple[dict[str, Any], str]:
    """The generator's summary (its last line, JSON) and everything it printed before."""
    generator = manage_py("loadgen", "--base-url", base_url, "--json", "--stats-every", "0", *args)
    code, out, err = generator.wait(timeout=timeout)
    assert code == 0, f"{out}\n{err}"
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary, out


def test_a_simulated_day_matches_its_ground_truth(platform):
    # given a live platform and a client polling its stats endpoint
    with StatsPoller(platform.base_url) as poller:
        # when the generator plays one day, in 48 s
        summary, printed = run_loadgen(
            platform.base_url, "--time-scale", str(TIME_SCALE), "--duration", "1d", "--seed", SEED,
            "--run-id", "scaled-day", "--players", "600", "--entries-min", "5", "--entries-max", "15", "--drain", "40",
            "--report-every", "5",
        )  # fmt: skip
        time.sleep(0.5)  # the poller's last requests
    run = summary["run"]
    drops = Lottery.objects.filter(kind="drop", title__startswith=f"Loadgen {run} #")
    truth = InjectedAnomaly.objects.filter(run=run)
    # without a terminal it printed a plain status line now and then, and its summary at the end
    status = [line for line in printed.splitlines() if line.startswith("sim ")]
    assert len(status) >= 5 and " created, " in status[-1] and "refused: " in status[-1], printed[:2000]
    assert f"load generator run {run} (seed {SEED})" in printed

    # then the drops fit the intervals: one at the start, then one every 20 to 55 simulated minutes
    assert summary["simulated_minutes"] >= DAY_MINUTES
    assert DAY_MINUTES / 55 <= drops.count() <= DAY_MINUTES / 20 + 1
    assert drops.count() == summary["drops"]["created"]
    assert summary["drops"]["failed"] == summary["drops"]["skipped"] == 0
    # and the worker drew every one of them on its timer
    assert set(drops.values_list("state", flat=True)) <= {"drawn", "cancelled"}
    assert summary["drops"]["drawn"] + summary["drops"]["cancelled"] == drops.count()

    # and the cheaters' share of the entries sent is within the 99 % binomial interval of CHEATER_PERCENTAGE
    cheats = truth.filter(kind=AnomalyKind.FRAUDULENT_ENTRY)
    sent = summary["entries"]["sent"]
    low, high = binomial_interval(sent, settings.CHEATER_PERCENTAGE)
    assert cheats.count() == summary["cheats"]["sent"]
    assert low <= cheats.count() <= high, (cheats.count(), sent, low, high)

    # and fraud detection is exact: every duplicate_entry refusal is an injected cheat (precision 1.0), and every
    # cheat that reached a lottery holding its original was refused as one (recall 1.0)
    rejected = Ballot.objects.filter(lottery__in=drops, status="rejected")
    injected = {c.details["ballot_id"]: c for c in cheats if c.details["code"] == "duplicate_entry"}
    reached = [
        c for c in cheats if c.details["original_ballot_id"] is not None and c.details["code"] != "lottery_closed"
    ]
    precision = len(set(rejected.values_list("id", flat=True)) & set(injected)) / max(1, rejected.count())
    recall = sum(1 for c in reached if c.details["code"] == "duplicate_entry") / max(1, len(reached))
    assert (precision, recall) == (1.0, 1.0)
    assert rejected.count() == len(injected) == summary["cheats"]["refused_duplicate_entry"] > 0
    reasons = {"phone_number": "shared_phone_number", "external_account_id": "shared_external_account"}
    for ballot in rejected.select_related("player"):
        cheat = injected[ballot.pk]
        original = Ballot.objects.select_related("player").get(pk=cheat.details["original_ballot_id"])
        assert (ballot.player.username, original.player.username) == (cheat.details["cheater"], cheat.details["copies"])
        assert (original.lottery_id, original.status) == (ballot.lottery_id, "valid")
        assert ballot.rejection_reason == reasons[cheat.details["shares"]]
    respelled = [c for c in cheats if c.details["shares"] == "phone_number" and c.details["code"] == "duplicate_entry"]
    assert any(
        not c.details["phone_number_given"].startswith("+44") or " " in c.details["phone_number_given"]
        for c in respelled
    )  # fmt: skip  (caught across spellings, by E.164)

    # and the low-participation and burst drops are the ones the ground truth names, no more, no fewer
    stored = {d.pk: d.ballots.count() for d in drops}
    lows = truth.filter(kind=AnomalyKind.LOW_PARTICIPATION)
    assert set(lows.values_list("lottery_id", flat=True)) == {pk for pk, n in stored.items() if n == 1}
    assert lows.count() == summary["anomalies"].get(AnomalyKind.LOW_PARTICIPATION, 0) >= 1
    bursts = truth.filter(kind=AnomalyKind.TRAFFIC_BURST)
    assert bursts.count() == summary["anomalies"].get(AnomalyKind.TRAFFIC_BURST, 0) >= 1
    burst_drops = set(bursts.values_list("lottery_id", flat=True))
    for burst in bursts:
        assert 10 <= burst.details["per_second"] <= 25
        assert burst.details["entries"] >= 50
    # a burst drop got more entries than any other drop could (at most 15, with their cheats)
    assert min(stored[pk] for pk in burst_drops) > 15 >= max(n for pk, n in stored.items() if pk not in burst_drops)

    # and the stats client saw exactly the 506 bursts the ground truth records, each whole and in a row, none outside
    recorded = {b.pk: b for b in truth.filter(kind=AnomalyKind.STATS_506)}
    assert len(recorded) == summary["anomalies"].get(AnomalyKind.STATS_506, 0) >= 5
    statuses = [status for status, _, _ in poller.answers]
    assert set(statuses) <= {200, 506}
    seen = [(anomaly, retry) for status, anomaly, retry in poller.answers if status == 506]
    assert {anomaly for anomaly, _ in seen} == set(recorded)
    assert {retry for _, retry in seen} == {"1"}
    for anomaly_id, burst in recorded.items():
        positions = [i for i, (_, a, _) in enumerate(poller.answers) if a == anomaly_id]
        assert len(positions) == burst.details["requests"] == burst.served, anomaly_id
        assert positions == list(range(positions[0], positions[0] + len(positions))), "a burst's 506s come in a row"


def operator(make_player):
    """A staff member with the operations role's permissions (a transactional test's flush took the groups away)."""
    staff = make_player(is_staff=True)
    labels = [name.split(".") for name in ROLES["operations"]]
    staff.user_permissions.set(
        Permission.objects.filter(
            reduce(operator_or, (Q(content_type__app_label=app, codename=code) for app, code in labels))
        )
    )
    return staff


def test_a_switch_flipped_in_admin_reaches_a_running_generator(platform, make_player, client):
    # given an operator who sets the generator's switches in admin: a drop every simulated minute, no low participation
    client.force_login(operator(make_player))
    add = "/admin/core/livesetting/add/"
    for name, value in [("MIN_EVENT_INTERVAL_MINUTES", "1"), ("MAX_EVENT_INTERVAL_MINUTES", "1"),
                        ("ANOMALY_LOW_PARTICIPATION_PERCENTAGE", "0")]:  # fmt: skip
        assert client.post(add, {"name": name, "value": value}).status_code == 302
    token = Token.objects.create(user=operator(make_player)).key

    # when a generator runs (a drop a second) and, after its fourth drop, the operator sets the share to 1
    generator = manage_py(
        "loadgen", "--base-url", platform.base_url, "--json", "--stats-every", "0", "--time-scale", "60",
        "--max-drops", "14", "--players", "50", "--entries-min", "3", "--entries-max", "5", "--window-min", "2",
        "--window-max", "3", "--switch-poll", "1", "--drain", "20", "--token", token, "--run-id", "flip",
    )  # fmt: skip
    drops = Lottery.objects.filter(title__startswith="Loadgen flip #")
    deadline = time.monotonic() + 60
    while drops.count() < 4:
        assert time.monotonic() < deadline and generator.process.poll() is None, generator.output()
        time.sleep(0.1)
    change = "/admin/core/livesetting/ANOMALY_LOW_PARTICIPATION_PERCENTAGE/change/"
    assert client.post(change, {"value": "1"}).status_code == 302
    flipped = time.time()
    code, out, err = generator.wait(timeout=120)
    assert code == 0, f"{out}\n{err}"

    # then, without a restart, the drops created before the flip had several entries and those a few seconds
    # after it (the switch read within LIVE_SETTINGS_REFRESH_SECONDS plus a poll) had one each
    lows = set(
        InjectedAnomaly.objects.filter(run="flip", kind=AnomalyKind.LOW_PARTICIPATION).values_list(
            "lottery_id", flat=True
        )
    )
    seen_by = flipped + settings.LIVE_SETTINGS_REFRESH_SECONDS + 1 + 2
    before = [d for d in drops if d.created_at.timestamp() < flipped]
    after = [d for d in drops if d.created_at.timestamp() > seen_by]
    assert len(before) >= 4 and len(after) >= 3, (len(before), len(after))
    assert not lows & {d.pk for d in before}
    assert {d.pk for d in after} <= lows
    assert all(d.ballots.count() == 1 for d in after)
    assert all(d.ballots.count() >= 3 for d in before)
