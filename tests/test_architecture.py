"""The floors run one way: bin/architecture --check passes here, and fails on a tree that breaks its rules."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bin" / "architecture"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_project_has_no_cycle_no_upward_arrow_and_no_unexplained_long_function():
    result = run("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cycles between apps: 0" in result.stdout
    assert "upward arrows: 0" in result.stdout
    floors = "core < outbox < lotteries < entries < draws < notifications < lifecycle < pools < loadgen < analytics"
    assert f"floors, ground first: {floors}" in result.stdout


def _app(root: Path, name: str, source: str = "") -> None:
    (root / name).mkdir()
    (root / name / "apps.py").write_text("")
    (root / name / "services.py").write_text(source)


def test_an_upward_import_a_cycle_and_a_long_function_each_fail_the_check(tmp_path):
    # given a project whose ground floor imports the floor above it, which imports it back
    (tmp_path / "lottery_site").mkdir()
    (tmp_path / "lottery_site" / "settings.py").write_text('INSTALLED_APPS = ["django.contrib.admin", "low", "high"]\n')
    long_body = "".join(f"    x{n} = {n}\n" for n in range(70))
    _app(tmp_path, "low", f"from high import services\n\n\ndef big():\n{long_body}")
    _app(tmp_path, "high", "import low.services\n")

    result = run("--check", "--root", str(tmp_path))

    assert result.returncode == 1
    assert "cycles between apps: 1\n  high <-> low" in result.stdout
    assert "upward arrows: 1\n  low -> high: low/services.py" in result.stdout
    assert "71 low/services.py:4 big" in result.stdout.split("without a '# Long:' reason:")[1]


PROJECT_PACKAGES = {
    "core", "outbox", "lotteries", "entries", "draws", "notifications", "lifecycle", "pools", "loadgen",
    "analytics", "lottery_site", "tests",
}  # fmt: skip


def test_every_project_import_of_the_benchmarks_resolves():
    """The benchmarks import the project inside their functions, where only a run would notice a moved name."""
    import ast
    import importlib

    bench = Path(__file__).resolve().parent.parent / "bench"
    missing = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT_PACKAGES:
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.name}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if not hasattr(module, alias.name) and not _is_module(f"{node.module}.{alias.name}")
                ]
    assert not missing


def _is_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
