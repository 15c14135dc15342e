"""Helper for the management command tests: run a command and keep what it printed."""

from io import StringIO

from django.core.management import call_command


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()
