"""The load generator: plays the first seed's traffic against a running platform, over its HTTP API only.

Threads: the main loop (this module's ``Generator.run``) creates drops on
their schedule, arms the stats endpoint's 506 bursts, reads the chaos
switches every few seconds, reports the ground truth, watches its drops get
drawn and shows progress; a scheduler thread hands each entry to a pool of
sender threads at its moment; a cheat is handed over only once the entry it
copies got its 201. Nothing here touches the database or calls a service:
every effect is an HTTP request to ``base_url``.
"""

import heapq
import itertools
import math
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loadgen import plan, population, switches
from loadgen.client.http import Answer, Api

# Kinds of the ground truth, as the server names them (loadgen.models.AnomalyKind).
LOW, BURST, STATS_506, FRAUD = (
    "anomalous_low_participation",
    "anomalous_traffic_burst",
    "anomalous_stats_endpoint_506",
    "fraudulent_entry",
)
FLUSH_SECONDS = 1.0  # the ground truth goes out in batches this often
WATCH_SECONDS = 2.0  # a drop past its window is looked at this often until drawn


@dataclass(frozen=True)
class Options:
    base_url: str = "http://127.0.0.1:8000"
    time_scale: float = 1.0
    seed: str | None = None
    duration_minutes: float | None = None  # simulated; None: until stopped
    max_drops: int | None = None
    shape: plan.Shape = field(default_factory=plan.Shape)
    pinned: dict[str, Any] = field(default_factory=dict)  # switches --set pins for the run
    concurrency: int = 32
    switch_poll_seconds: float = 2.0
    stats_every_seconds: float = 30.0  # 0: the generator reads no stats itself
    drain_seconds: float = 30.0  # after the last window, how long to wait for the draws
    staff_token: str = ""
    drops_token: str = ""
    loadgen_token: str = ""
    run_id: str | None = None


@dataclass
class Totals:
    """What the run did so far; read by the progress display from another thread (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    drops_created: int = 0
    drops_failed: int = 0
    drops_skipped: int = 0
    drops_final: Counter[str] = field(default_factory=Counter)  # drawn, cancelled
    entries_planned: int = 0
    entries_sent: int = 0
    entries_accepted: int = 0
    entries_cancelled: int = 0  # still waiting for their moment when the run was stopped
    refused: Counter[str] = field(default_factory=Counter)
    cheats_sent: int = 0
    cheats_refused: int = 0  # duplicate_entry
    cheats_skipped: int = 0  # their original was refused
    anomalies: Counter[str] = field(default_factory=Counter)
    stats_506_refused: int = 0
    stats_polls: int = 0
    stats_506_seen: int = 0
    records_lost: int = 0
    lags: list[float] = field(default_factory=list)  # seconds an entry went out after its moment
    due_per_second: Counter[int] = field(default_factory=Counter)  # entries due in each second of the run
    done_per_second: Counter[int] = field(default_factory=Counter)  # entries answered in each second
    first_due: float | None = None
    last_due: float = 0.0
    first_sent: float | None = None
    last_done: float = 0.0

    @property
    def drops_open(self) -> int:
        return self.drops_created - sum(self.drops_final.values())


@dataclass
class LiveDrop:
    terms: plan.DropPlan
    lottery_id: int
    opened: float  # monotonic, when its creation was answered
    closes: float  # monotonic, its window's end
    accepted: dict[int, int] = field(default_factory=dict)  # entry key -> ballot id
    waiting: dict[int, list[plan.PlannedEntry]] = field(default_factory=dict)  # original key -> its cheats
    outstanding: int = 0
    state: str = "open"


class Generator:
    def __init__(self, options: Options, *, show: Callable[["Generator", bool], None] | None = None) -> None:
        self.options = options
        self.seed = options.seed or os.urandom(4).hex()
        self.run_id = options.run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{self.seed}"[:64]
        self.api = Api(options.base_url)
        self.totals = Totals()
        self.show = show
        self.switch_values: dict[str, Any] = {}
        self.server_switches: dict[str, Any] = {}
        self.members: dict[str, dict[str, Any]] = {}
        self.drops: list[LiveDrop] = []
        self._records: list[dict[str, Any]] = []
        self._records_lock = threading.Lock()
        self._queue: list[tuple[float, int, LiveDrop, plan.PlannedEntry]] = []
        self._queue_cv = threading.Condition()
        self._sequence = itertools.count()
        self._stopping = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="loadgen-send")
        # Drops are created off the main loop, so a slow answer never delays the schedule of the next ones.
        self._creator = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loadgen-drop")
        self._drops_begun = 0
        self._creations_pending = 0
        self._outstanding = 0  # entries of created drops not yet answered (or given up)
        self._watched: list[LiveDrop] = []  # drops not yet drawn or cancelled
        self.started_mono = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.cpu_started = time.process_time()
        self.wall_seconds = 0.0
        self.cpu_seconds = 0.0

    # --- the clock ------------------------------------------------------------------------

    def simulated_now(self) -> datetime:
        elapsed = (time.monotonic() - self.started_mono) * self.options.time_scale
        return self.started_at + timedelta(seconds=elapsed)

    def stop(self) -> None:
        """Stop creating drops; the run ends as soon as the entries in flight are answered (SIGTERM, Ctrl-C)."""
        self._stopping.set()

    # --- credentials ----------------------------------------------------------------------

    def _auth(self, purpose: str) -> dict[str, str]:
        if self.options.staff_token:
            return {"Authorization": f"Token {self.options.staff_token}"}
        token = self.options.drops_token if purpose == "drops" else self.options.loadgen_token
        return {"X-Internal-Token": token} if token else {}

    # --- set-up ---------------------------------------------------------------------------

    def provision(self) -> None:
        answer = self.api.control(
            "POST", "/api/v1/loadgen/players", body={"count": self.options.shape.players}, headers=self._auth("loadgen")
        )
        if answer.status != 200:
            raise RuntimeError(f"provisioning the players failed: {answer.status} {answer.code} {answer.body!r:.300}")
        self.members = {player["username"]: player for player in answer.body["players"]}

    def read_switches(self) -> Answer:
        """Read the chaos switches (the pins stay over them); a failed read keeps the last values."""
        answer = self.api.call("GET", "/api/v1/loadgen/chaos", headers=self._auth("loadgen"))
        if answer.status != 200:
            return answer
        self.server_switches = dict(answer.body["switches"])
        self.switch_values = {
            name: self.server_switches[name] for name in switches.SWITCHES if name in self.server_switches
        }
        self.switch_values.update(self.options.pinned)
        return answer

    @property
    def plan_switches(self) -> plan.Switches:
        return switches.as_plan_switches(self.switch_values)

    # --- the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        # Long: the main loop is one schedule of timed duties, each a few lines; split, the timing would scatter.
        first = self.read_switches()
        if first.status != 200:
            why = first.error or f"{first.status} {first.code}"
            url = f"{self.api.base_url}/api/v1/loadgen/chaos"
            raise RuntimeError(f"GET {url} failed ({why}): is the platform up, the token right?")
        self.provision()
        scheduler = threading.Thread(target=self._schedule, name="loadgen-scheduler", daemon=True)
        scheduler.start()
        intervals = random.Random(f"{self.seed}/intervals")  # noqa: S311 (a simulation)
        bursts = random.Random(f"{self.seed}/506")  # noqa: S311
        options = self.options
        end = None if options.duration_minutes is None else options.duration_minutes * 60 / options.time_scale
        self.started_mono, self.started_at = time.monotonic(), datetime.now(UTC)
        next_drop = 0.0
        next_506, next_requests = plan.stats_506_next(bursts, self.plan_switches, options.time_scale)
        next_switches = next_flush = next_watch = next_show = 0.0
        next_stats = options.stats_every_seconds if options.stats_every_seconds > 0 else math.inf
        creating, drain_until = True, None
        while True:
            now = time.monotonic() - self.started_mono
            if creating and (
                self._stopping.is_set()
                or (end is not None and now >= end)
                or (options.max_drops is not None and self._drops_begun >= options.max_drops)
            ):
                creating = False
            if now >= next_switches:
                self.read_switches()
                next_switches = now + options.switch_poll_seconds
            if creating and now >= next_drop:
                self._begin_drop()
                next_drop += plan.interval_seconds(intervals, self.plan_switches, options.time_scale)
            if creating and now >= next_506:
                gap, following = plan.stats_506_next(bursts, self.plan_switches, options.time_scale)
                if self.plan_switches.stats_506_enabled:
                    self._arm_506(next_requests, expires=gap)
                next_506, next_requests = next_506 + gap, following
            if now >= next_flush:
                self._flush()
                next_flush = now + FLUSH_SECONDS
            if now >= next_watch:
                self._watch()
                next_watch = now + WATCH_SECONDS
            if now >= next_stats:
                next_stats = now + self._read_stats()
            if self.show is not None and now >= next_show:
                self.show(self, False)
                next_show = now + 0.25
            if self._stopping.is_set():
                self._cancel_queued()
                break
            if not creating and self._creations_pending == 0:
                if drain_until is None:  # the last window's end, and time for its draw
                    last_close = max((d.closes for d in self.drops), default=time.monotonic())
                    drain_until = last_close - self.started_mono + options.drain_seconds
                if self._idle() and (self._all_final() or now >= drain_until or not options.drain_seconds):
                    break
            time.sleep(0.05)  # the duties above are due at most 20 times a second
        self._stopping.set()  # the scheduler ends; entries in flight are answered first
        with self._queue_cv:
            self._queue_cv.notify_all()
        self._creator.shutdown(wait=True)
        self._senders.shutdown(wait=True)
        self._flush()
        self._watch()
        self.wall_seconds = time.monotonic() - self.started_mono
        self.cpu_seconds = time.process_time() - self.cpu_started
        if self.show is not None:
            self.show(self, True)
        return self.summary()

    # --- drops ----------------------------------------------------------------------------

    def _begin_drop(self) -> None:
        """Plan the next drop here (its number and the switches now decide it), create it on the creator thread."""
        self._drops_begun += 1
        rng = random.Random(f"{self.seed}/drop/{self._drops_begun}")  # noqa: S311
        try:
            drop = plan.drop_plan(
                rng, number=self._drops_begun, switches=self.plan_switches, shape=self.options.shape,
                time_scale=self.options.time_scale,
            )  # fmt: skip
        except ValueError:
            with self.totals.lock:
                self.totals.drops_skipped += 1
            return
        with self.totals.lock:
            self._creations_pending += 1
        self._creator.submit(self._create_drop, drop)

    def _create_drop(self, drop: plan.DropPlan) -> None:
        try:
            self._create(drop)
        finally:
            with self.totals.lock:
                self._creations_pending -= 1

    def _create(self, drop: plan.DropPlan) -> None:
        number = drop.number
        closes_at = datetime.now(UTC) + timedelta(seconds=drop.window_seconds)
        body = {
            "title": f"Loadgen {self.run_id} #{number}",
            "prize": drop.prize,
            "prize_quantity": drop.prize_quantity,
            "alternates_count": drop.alternates_count,
            "closes_at": closes_at.isoformat().replace("+00:00", "Z"),
        }
        opened = time.monotonic()  # the window's start, as closes_at was reckoned; its entries follow the answer
        answer = self.api.control("POST", "/api/v1/drops", body=body, headers=self._auth("drops"))
        if answer.status != 201:
            with self.totals.lock:
                self.totals.drops_failed += 1
            return
        live = LiveDrop(terms=drop, lottery_id=answer.body["id"], opened=opened, closes=opened + drop.window_seconds)
        self.drops.append(live)
        simulated = self.simulated_now().isoformat()
        window = {
            "lottery_id": live.lottery_id,
            "opens_at": answer.body["opens_at"],
            "closes_at": answer.body["closes_at"],
        }
        if drop.low_participation:
            self._record(LOW, live.lottery_id, simulated, {**window, "entries": len(drop.entries)})
        if drop.burst is not None:
            started = datetime.now(UTC) + timedelta(seconds=drop.burst.start)
            ends = started + timedelta(seconds=drop.burst.seconds)
            self._record(BURST, live.lottery_id, simulated, {
                **window, "entries": drop.burst.entries, "per_second": round(drop.burst.per_second, 3),
                "starts_at": started.isoformat(), "ends_at": ends.isoformat(),
            })  # fmt: skip
        with self.totals.lock:
            self.totals.drops_created += 1
            self.totals.entries_planned += len(drop.entries)
        cheats: dict[int, list[plan.PlannedEntry]] = {}
        for entry in drop.entries:
            if entry.cheat and entry.copies is not None:
                cheats.setdefault(entry.copies, []).append(entry)
        live.waiting = cheats
        live.outstanding = len(drop.entries)
        with self.totals.lock:
            self._outstanding += len(drop.entries)
        self._watched.append(live)
        for entry in drop.entries:
            if not entry.cheat:
                self._enqueue(opened + entry.at, live, entry)

    def _watch(self) -> None:
        """Look at the drops whose window has ended until each is drawn (or cancelled)."""
        now = time.monotonic()
        for drop in list(self._watched):
            if now >= drop.closes:
                answer = self.api.call("GET", f"/api/v1/lotteries/{drop.lottery_id}", headers=self._reader())
                state = answer.body.get("state") if isinstance(answer.body, dict) else None
                if state in ("drawn", "cancelled"):
                    drop.state = state
                    self._watched.remove(drop)
                    with self.totals.lock:
                        self.totals.drops_final[state] += 1

    def _all_final(self) -> bool:
        return not self._watched

    def _reader(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.options.staff_token}"} if self.options.staff_token else {}

    # --- entries ----------------------------------------------------------------------------

    def _enqueue(self, due: float, drop: LiveDrop, entry: plan.PlannedEntry) -> None:
        with self._queue_cv:
            heapq.heappush(self._queue, (due, next(self._sequence), drop, entry))
            self._queue_cv.notify()
        with self.totals.lock:
            self.totals.first_due = due if self.totals.first_due is None else min(self.totals.first_due, due)
            self.totals.last_due = max(self.totals.last_due, due)
            self.totals.due_per_second[int(due - self.started_mono)] += 1

    def _schedule(self) -> None:
        """Hand each entry to a sender at its moment (the scheduler thread)."""
        while True:
            with self._queue_cv:
                while not self._queue or self._queue[0][0] > time.monotonic():
                    if self._stopping.is_set() and not self._queue:
                        return
                    timeout = None if not self._queue else self._queue[0][0] - time.monotonic()
                    self._queue_cv.wait(timeout=0.5 if timeout is None else min(timeout, 0.5))
                due, _, drop, entry = heapq.heappop(self._queue)
            try:
                self._senders.submit(self._send, due, drop, entry)
            except RuntimeError:  # shut down: the run is over
                return

    def _send(self, due: float, drop: LiveDrop, entry: plan.PlannedEntry) -> None:
        member = population.twin(entry.player) if entry.cheat else population.honest(entry.player)
        token = self.members[member.username]["token"]
        key = f"lg-{self.run_id}-{drop.terms.number}-{entry.key}"
        started = time.monotonic()
        answer = self.api.call(
            "POST",
            f"/api/v1/lotteries/{drop.lottery_id}/ballots",
            headers={"Authorization": f"Token {token}", "Idempotency-Key": key},
        )
        done = time.monotonic()
        accepted = answer.status == 201
        with self.totals.lock:
            totals = self.totals
            totals.entries_sent += 1
            totals.lags.append(started - due)
            totals.first_sent = started if totals.first_sent is None else min(totals.first_sent, started)
            totals.last_done = max(totals.last_done, done)
            totals.done_per_second[int(done - self.started_mono)] += 1
            if accepted:
                totals.entries_accepted += 1
            else:
                totals.refused[answer.code] += 1
            if entry.cheat:
                totals.cheats_sent += 1
                totals.cheats_refused += answer.code == "duplicate_entry"
        if entry.cheat:
            self._record_cheat(drop, entry, member, answer)
        else:
            if accepted:
                drop.accepted[entry.key] = answer.body["id"]
            for cheat in drop.waiting.pop(entry.key, []):  # a cheat goes out only after its original's 201
                if accepted and not self._stopping.is_set():
                    self._enqueue(max(drop.opened + cheat.at, time.monotonic()), drop, cheat)
                else:
                    with self.totals.lock:
                        self.totals.cheats_skipped += accepted is False
                        drop.outstanding -= 1
                        self._outstanding -= 1
        with self.totals.lock:
            drop.outstanding -= 1
            self._outstanding -= 1

    def _record_cheat(
        self, drop: LiveDrop, entry: plan.PlannedEntry, member: population.Member, answer: Answer
    ) -> None:
        details = answer.body.get("error", {}).get("details", {}) if isinstance(answer.body, dict) else {}
        self._record(FRAUD, drop.lottery_id, self.simulated_now().isoformat(), {
            "lottery_id": drop.lottery_id,
            "cheater": member.username,
            "copies": member.twin_of,
            "original_ballot_id": drop.accepted.get(entry.copies) if entry.copies is not None else None,
            "shares": member.shares,
            "phone_number_given": member.phone_number if member.shares == population.PHONE else "",
            "status": answer.status,
            "code": "" if answer.status == 201 else answer.code,
            "ballot_id": answer.body.get("id") if answer.status == 201 else details.get("ballot_id"),
        })  # fmt: skip

    def _cancel_queued(self) -> None:
        """Stopped: the entries not yet sent are not sent."""
        with self._queue_cv:
            cancelled, self._queue = self._queue, []
        with self.totals.lock:
            self.totals.entries_cancelled += len(cancelled)

    def _idle(self) -> bool:
        with self.totals.lock:
            return self._outstanding <= 0

    # --- the stats endpoint ---------------------------------------------------------------------

    def _arm_506(self, requests: int, *, expires: float) -> None:
        report = {
            "kind": STATS_506,
            "simulated_at": self.simulated_now().isoformat(),
            "details": {"requests": requests},
            "expires_in_seconds": max(1, min(86_400, math.ceil(expires))),
        }
        answer = self.api.control(
            "POST", "/api/v1/loadgen/anomalies", body={"run": self.run_id, "anomalies": [report]},
            headers=self._auth("loadgen"),
        )  # fmt: skip
        with self.totals.lock:
            if answer.status == 201:
                self.totals.anomalies[STATS_506] += 1
            else:
                self.totals.stats_506_refused += 1

    def _read_stats(self) -> float:
        """Read the stats as a dashboard would; seconds until the next read (a 506's Retry-After, if later)."""
        answer = self.api.call("GET", "/api/v1/stats", query={"kind": "drop", "page_size": 50}, headers=self._reader())
        with self.totals.lock:
            self.totals.stats_polls += 1
            if answer.status == 506:
                self.totals.stats_506_seen += 1
        if answer.status == 506:
            return max(answer.retry_after(), 0.1)
        return self.options.stats_every_seconds

    # --- the ground truth -------------------------------------------------------------------------

    def _record(self, kind: str, lottery_id: int | None, simulated_at: str, details: dict[str, Any]) -> None:
        with self._records_lock:
            self._records.append(
                {"kind": kind, "lottery_id": lottery_id, "simulated_at": simulated_at, "details": details}
            )

    def _flush(self) -> None:
        with self._records_lock:
            batch, self._records = self._records[:1000], self._records[1000:]
        if not batch:
            return
        answer = self.api.control(
            "POST", "/api/v1/loadgen/anomalies", body={"run": self.run_id, "anomalies": batch},
            headers=self._auth("loadgen"),
        )  # fmt: skip
        with self.totals.lock:
            if answer.status == 201:
                self.totals.anomalies.update(item["kind"] for item in batch)
            else:
                self.totals.records_lost += len(batch)

    # --- the summary --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        t = self.totals
        with t.lock:
            lags = sorted(t.lags)
            due_span = (t.last_due - t.first_due) if t.first_due is not None else 0.0
            sent_span = (t.last_done - t.first_sent) if t.first_sent is not None else 0.0
            return {
                "run": self.run_id,
                "seed": self.seed,
                "base_url": self.options.base_url,
                "time_scale": self.options.time_scale,
                "simulated_minutes": round(self.wall_seconds * self.options.time_scale / 60, 1),
                "wall_seconds": round(self.wall_seconds, 2),
                "drops": {
                    "created": t.drops_created,
                    "open": t.drops_open,
                    "drawn": t.drops_final["drawn"],
                    "cancelled": t.drops_final["cancelled"],
                    "failed": t.drops_failed,
                    "skipped": t.drops_skipped,
                    "ids": [drop.lottery_id for drop in self.drops],
                },
                "entries": {
                    "planned": t.entries_planned,
                    "sent": t.entries_sent,
                    "accepted": t.entries_accepted,
                    "refused": dict(t.refused),
                    "cancelled": t.entries_cancelled,
                },
                "cheats": {
                    "sent": t.cheats_sent,
                    "refused_duplicate_entry": t.cheats_refused,
                    "skipped": t.cheats_skipped,
                },
                "anomalies": dict(t.anomalies),
                "stats": {
                    "polls": t.stats_polls,
                    "answered_506": t.stats_506_seen,
                    "bursts_refused": t.stats_506_refused,
                },
                "records_lost": t.records_lost,
                "rate": {
                    **_steady_rates(t.due_per_second, t.done_per_second),
                    "requested_per_second": round(t.entries_planned / due_span, 1) if due_span > 0 else None,
                    "achieved_per_second": round(t.entries_sent / sent_span, 1) if sent_span > 0 else None,
                    "lag_p50_ms": round(statistics.median(lags) * 1000, 1) if lags else None,
                    "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1) if lags else None,
                },
                "cpu": {
                    "seconds": round(self.cpu_seconds, 2),
                    "share_of_a_core": round(self.cpu_seconds / self.wall_seconds, 3) if self.wall_seconds else None,
                },
            }


def _steady_rates(due: Counter[int], done: Counter[int]) -> dict[str, float | None]:
    """Entries due and answered per second in the steady middle of the run (its seconds' middle half), medians."""
    if not due:
        return {"steady_requested_per_second": None, "steady_achieved_per_second": None}
    first, last = min(due), max(due)
    middle = range(first + (last - first) // 4, last - (last - first) // 4 + 1)
    return {
        "steady_requested_per_second": float(statistics.median(due[s] for s in middle)),
        "steady_achieved_per_second": float(statistics.median(done[s] for s in middle)),
    }
