"""docker-compose.yml against the code, read rather than run (no Docker engine here).

For each service built from the platform's image: its command exists in
that image (a management command with options it takes, a console script of
a package the image installs, a file of the repository that is copied in),
and its environment names only variables that are documented in
docs/settings.md and read: by the settings, by a module of the platform, by
gunicorn.conf.py, or by a package the image installs.
"""

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands, load_command_class
from gunicorn.config import Config as GunicornConfig
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
IMAGE = "lottery-platform:local"


def platform_services() -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, s in COMPOSE["services"].items() if "build" in s or s.get("image") == IMAGE]


SERVICES = platform_services()


def interpolate(text: str) -> str:
    """Compose's variable substitution with nothing set on the host: ``${NAME:-default}`` is the default."""
    text = re.sub(r"\$\{(\w+)(?::?[-?]([^}]*))?\}", lambda m: m.group(2) or "", text.replace("$$", "\0"))
    return re.sub(r"\$\w+", "", text).replace("\0", "$")


def command(service: dict[str, Any]) -> list[str]:
    """The service's command as compose runs it (variables substituted), or the image's CMD."""
    raw = service.get("command")
    if raw is None:
        cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
        assert cmd, "the Dockerfile has no CMD in exec form"
        raw = json.loads(cmd.group(1))
    parts = shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]
    return [interpolate(part) for part in parts]


# --- What the image holds ---------------------------------------------------------------------------------


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment(extra: str) -> dict[str, str]:
    environment = {key: str(value) for key, value in default_environment().items()}
    environment["extra"] = extra
    return environment


@cache
def image_distributions() -> frozenset[str]:
    """requirements.txt's packages and everything they require: what the Dockerfile's pip install brings."""
    assert "pip install --no-cache-dir -r requirements.txt" in DOCKERFILE
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pending = [Requirement(line) for line in lines if line and not line.startswith("-")]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        key = (_normalised(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        environments = [_environment(extra) for extra in ("", *requirement.extras)]
        for raw in metadata.requires(requirement.name) or []:
            needed = Requirement(raw)
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                pending.append(needed)
    return frozenset(name for name, _ in seen)


def console_script_of_the_image(name: str) -> bool:
    return any(
        point.name == name and _normalised(point.dist.name) in image_distributions()  # type: ignore[union-attr]
        for point in metadata.entry_points(group="console_scripts")
    )


def in_the_image(relative: str) -> bool:
    """A file of the repository that the Dockerfile's COPY . . takes (not left out by .dockerignore)."""
    if not (ROOT / relative).is_file():
        return False
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    parts = Path(relative).parts
    return not any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(parts[0], p) for p in ignored)


# --- Commands ------------------------------------------------------------------------------------------


def check_manage_py(args: list[str]) -> None:
    assert args and args[0] == "manage.py" and in_the_image("manage.py"), args
    name, *options = args[1:]
    commands = get_commands()
    assert name in commands, f"manage.py {name}: no such command"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    parser.parse_args(options)  # an unknown option raises


def check_gunicorn(args: list[str]) -> None:
    assert console_script_of_the_image("gunicorn")
    parsed = GunicornConfig().parser().parse_args(args)
    assert parsed.config is None or in_the_image(parsed.config), f"--config {parsed.config} is not in the image"


def check_celery(args: list[str], app: Celery) -> None:
    assert console_script_of_the_image("celery")
    context = celery_cli.make_context("celery", list(args))
    assert isinstance(find_app(context.params["app"]), Celery)  # how celery finds the app of --app
    context.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    with warnings.catch_warnings():  # Click 8.2 keeps the subcommand's name apart; Click 9 will not
        warnings.simplefilter("ignore", DeprecationWarning)
        protected: list[str] = list(getattr(context, "protected_args", []))
        name, *rest = [*protected, *context.args]
    subcommand = celery_cli.get_command(context, name)
    assert subcommand is not None, f"celery {name}: no such command"
    subcommand.make_context(name, rest, parent=context)  # an unknown option raises


@pytest.mark.parametrize(("name", "service"), SERVICES, ids=[name for name, _ in SERVICES])
def test_each_service_of_the_image_runs_a_command_that_exists_there(name, service):
    from lottery_site.celery import app

    argv = command(service)
    program, args = argv[0], argv[1:]
    if program == "python":
        assert re.search(r"^FROM python:", DOCKERFILE, re.M), "the image's python comes from its base image"
        check_manage_py(args)
    elif program == "gunicorn":
        check_gunicorn(args)
    elif program == "celery":
        check_celery(args, app)
    else:
        pytest.fail(f"{name}: {program} is not a program this test knows how to check")


def healthchecks() -> Iterator[tuple[str, list[str]]]:
    for name, service in SERVICES:
        if "healthcheck" in service:
            yield name, service["healthcheck"]["test"]


@pytest.mark.parametrize(("name", "test"), list(healthchecks()))
def test_the_healthchecks_of_the_images_services_are_python_that_compiles(name, test):
    assert test[:3] == ["CMD", "python", "-c"], test
    compile(test[3], f"{name} healthcheck", "exec")


def test_every_service_is_one_the_test_above_checks_or_a_third_party_image():
    for name, service in COMPOSE["services"].items():
        assert "build" in service or ":" in service.get("image", ""), f"{name}: neither built here nor a tagged image"
    assert {name for name, _ in SERVICES} >= {"web", "worker", "notifier", "beat", "relay", "consumer", "migrate"}


# --- Environment ---------------------------------------------------------------------------------------

# A read of a variable named in the code: os.environ.get("NAME"), os.environ["NAME"], env_int("NAME", ...).
_READS = (
    r"(?:env_(?:str|bool|int|float|list)\(|os\.environ\.get\(|os\.getenv\(|environ\.setdefault\(|os\.environ\[)"
    r"\s*[\"']{}[\"']"
)

# Imports the settings with an os.environ that writes down every name asked for (some are made up, as the
# internal tokens' INTERNAL_{PURPOSE}_TOKEN are).
_RECORD_SETTINGS_READS = """
import json, os, sys
class Recording(dict):
    asked = set()
    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)
    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)
    def __contains__(self, name):
        self.asked.add(name)
        return super().__contains__(name)
os.environ = Recording(os.environ)
import lottery_site.settings
sys.stdout.write(json.dumps(sorted(Recording.asked)))
"""


@cache
def settings_reads() -> frozenset[str]:
    env = {"PATH": os.environ["PATH"], "DJANGO_SECRET_KEY": "only-to-read-the-settings"}
    done = subprocess.run(
        [sys.executable, "-c", _RECORD_SETTINGS_READS], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return frozenset(json.loads(done.stdout))


@cache
def platform_sources() -> str:
    """The platform's own code that runs in the image (no tests, no benchmarks), with gunicorn.conf.py."""
    files = [p for p in ROOT.glob("*/**/*.py") if p.parts[len(ROOT.parts)] not in {"tests", "bench", ".venv"}]
    return "\n".join(p.read_text() for p in [*files, ROOT / "gunicorn.conf.py"])


@cache
def library_sources() -> list[Path]:
    paths = []
    for distribution in metadata.distributions():
        if _normalised(distribution.metadata["Name"]) in image_distributions():
            paths += [Path(str(distribution.locate_file(f))) for f in distribution.files or [] if f.suffix == ".py"]
    return paths


def read_by_a_library(variable: str) -> bool:
    quoted = (f'"{variable}"', f"'{variable}'")
    for path in library_sources():
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        if any(q in text for q in quoted):
            return True
    return False


def read_somewhere(variable: str) -> bool:
    return (
        variable in settings_reads()
        or bool(re.search(_READS.format(re.escape(variable)), platform_sources()))
        or read_by_a_library(variable)
    )


def environment_names() -> set[str]:
    return {variable for _, service in SERVICES for variable in (service.get("environment") or {})}


def test_the_services_environment_names_only_variables_that_are_documented_and_read():
    documented = (ROOT / "docs" / "settings.md").read_text()
    names = environment_names()

    assert len(names) > 20
    assert sorted(v for v in names if f"`{v}`" not in documented) == []
    assert sorted(v for v in names if not read_somewhere(v)) == []


def test_compose_variables_in_a_command_are_taken_at_their_defaults():
    assert interpolate("--time-scale=${LOADGEN_TIME_SCALE:-60}") == "--time-scale=60"
    assert interpolate("${UNSET}|${UNSET-x}|$$HOME|notifications@%h") == "|x|$HOME|notifications@%h"


def test_the_check_of_reads_can_tell_a_variable_nobody_reads():
    assert read_somewhere("DATABASE_URL")  # the settings
    assert read_somewhere("INTERNAL_DROPS_TOKEN_NEXT")  # the settings, by a name they make up
    assert read_somewhere("GUNICORN_WORKERS")  # gunicorn.conf.py
    assert read_somewhere("PROMETHEUS_MULTIPROC_DIR")
    assert not read_somewhere("LOTTERY_NO_SUCH_VARIABLE_ANYWHERE")


def test_each_long_running_process_exposes_the_metrics_port_it_is_given():
    ports = {"WORKER_METRICS_PORT", "RELAY_METRICS_PORT", "STAKES_CONSUMER_METRICS_PORT"}
    for name, service in SERVICES:
        argv = command(service)
        long_running = "worker" in argv or any(c in argv for c in ("relay_outbox", "consume_stakes"))
        given = {service["environment"][v] for v in ports & set(service.get("environment") or {})}
        assert bool(given) == long_running, f"{name}: metrics port {given or 'none'}"
        assert set(service.get("expose", [])) == given, f"{name} exposes {service.get('expose')}, listens on {given}"
        if "worker" in argv and "--pool" not in argv:  # prefork: the children's counts are added up in a directory
            assert service["environment"].get("PROMETHEUS_MULTIPROC_DIR"), name
        if given:
            assert service["environment"]["METRICS_BIND_ADDRESS"] == "0.0.0.0", name  # noqa: S104 (its container's)
