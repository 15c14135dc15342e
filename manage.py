#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")
    from django.core.management import execute_from_command_line

    from core.process import settings_or_exit

    settings_or_exit()  # a wrong setting: one log line saying which, not a traceback

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
