from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ApplicationError
from notifications.services import sms_received


class Command(BaseCommand):
    help = "Deliver an SMS from a player, as the gateway would (STOP opts them out of drop announcements)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("from_number", help="the sender, e.g. +447946000001 (read in PHONE_DEFAULT_REGION)")
        parser.add_argument("body", help='the message, e.g. "STOP"')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            stopped = sms_received(from_number=options["from_number"], body=options["body"])
        except ApplicationError as error:
            raise CommandError(f"{error.code}: {error.message}") from None
        self.stdout.write("opted out" if stopped else "not a STOP: nothing to do")
