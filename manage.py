#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lottery_site.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from core.process import settings_failed

    try:
        execute_from_command_line(sys.argv)  # reads the settings (--settings, or DJANGO_SETTINGS_MODULE)
    except Exception as error:
        if settings.configured:
            raise
        settings_failed(error)  # they could not be read: one log line saying why, not a traceback


if __name__ == "__main__":
    main()
