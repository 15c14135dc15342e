"""The short chaos run (bench/chaos.py --short): relay kills, a broker outage and a PostgreSQL restart under load.

The benchmark holds the goal (drained within 30 s of the broker's return);
this test allows three times that, and nothing lost, parked or reordered.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_nothing_is_lost_parked_or_reordered_and_the_backlog_drains():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--short", "--time-limit", "280"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])

    assert figures["valid"], run.stdout
    assert figures["written"] > 1000
    assert (figures["lost"], figures["parked"], figures["reordered"]) == (0, 0, 0), run.stdout
    assert figures["drain_seconds"] <= 3 * 30, run.stdout
