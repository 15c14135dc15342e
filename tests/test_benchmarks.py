"""The benchmarks' summary line and the figures table written from it (bench/_common.py, bench/run_all.py)."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def bench_module(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_an_invalid_run_judges_no_goal_even_one_its_figures_would_meet(capsys):
    common = bench_module("_common")
    common.summary("x", valid=False, figures={"rate": 10}, ratios={"a/b": 0.9}, goals={"a/b >= 0.5": True})
    common.summary("x", valid=True, figures={"rate": 10}, ratios={"a/b": 0.4}, goals={"a/b >= 0.5": False})
    invalid, valid = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert invalid["valid"] is False and invalid["goals"] == {"a/b >= 0.5": None}
    assert valid["goals"] == {"a/b >= 0.5": False}


def test_the_summary_is_the_last_json_line_of_a_run():
    run_all = bench_module("run_all")
    output = 'results\n  ratio 0.5\n{"benchmark": "x", "valid": true, "figures": {}}\n'
    assert run_all.last_summary(output) == {"benchmark": "x", "valid": True, "figures": {}}
    assert run_all.last_summary("results\n  !! INVALID RUN: crashed\n") is None


def test_the_three_tables_are_the_one_written_from_the_stored_results():
    run_all = bench_module("run_all")
    expected = run_all.table(run_all.load_results())
    for path in run_all.TABLE_FILES:
        text = path.read_text()
        block = text.split(run_all.BEGIN, 1)[1].split(run_all.END, 1)[0]
        assert block.strip() == expected.strip(), f"{path.name}: run bench/run_all.py --write-only"


def test_a_stored_invalid_run_is_shown_as_invalid_with_no_goal_met():
    run_all = bench_module("run_all")
    machine = {"cpu": "c", "cores": 2, "memory_gb": 8, "python": "3.11", "system": "Linux"}
    entry = {
        "benchmark": "draw_million",
        "what": "draw",
        "valid": False,
        "figures": {"draw_ms": 900.0},
        "ratios": {"draw/digest_query": 1.1},
        "goals": {"draw/digest_query <= 1.3": None},
        "date": "2026-12-02 10:00 UTC",
        "machine": machine,
    }
    row = run_all.table({"benchmarks": {"draw_million": entry}}).splitlines()[2]
    assert "INVALID RUN" in row and "not judged" in row and ": met" not in row
