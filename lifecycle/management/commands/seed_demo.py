import os
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from entries.errors import PlayerBanned
from entries.models import ConsentSource, Player
from entries.phones import normalize_phone_number
from entries.services import ballot_submit, sms_consent_set
from lifecycle.services import daily_lottery_open, drop_create, lottery_close
from lotteries.models import Lottery, TransitionSource
from lotteries.services import day_bounds, lottery_today

DEMO_PLAYERS = [
    # username, phone (numbers Ofcom keeps for drama: they reach nobody), external account, SMS opt-in
    ("alice", "+44 20 7946 0001", "acct-1001", True),
    ("bob", "+44 20 7946 0002", "acct-1002", True),
    ("carol", "+44 20 7946 0003", "acct-1003", True),
    ("dave", "+44 20 7946 0004", "acct-1004", False),
    ("erin", "+44 20 7946 0005", "acct-1005", False),
]


DEMO_DROP = "Demo drop"


class Command(BaseCommand):
    help = (
        "Seed a small demo (idempotent): a staff account, a few players with API tokens, "
        "today's daily lottery with ballots, and yesterday's lottery drawn. Three players opt in to drop SMS, "
        "and a drop opens a minute from now and closes four minutes later."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        staff_password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        player_password = os.environ.get("DEMO_PLAYER_PASSWORD", "demo-password")
        with transaction.atomic():
            staff, created = Player.objects.get_or_create(
                username="admin", defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                staff.set_password(staff_password)
                staff.save(update_fields=["password"])
            players = []
            for username, phone, account, opted_in in DEMO_PLAYERS:
                player, created = Player.objects.get_or_create(
                    username=username,
                    defaults={"phone_number": normalize_phone_number(phone), "external_account_id": account},
                )
                if created:
                    player.set_password(player_password)
                    player.save(update_fields=["password"])
                    if opted_in:
                        sms_consent_set(player_id=player.pk, opted_in=True, source=ConsentSource.IMPORT, actor=None)
                        player.refresh_from_db()
                players.append(player)

        today = lottery_today()
        yesterday = today - timedelta(days=1)
        past = daily_lottery_open(day=yesterday, source=TransitionSource.COMMAND)
        if past.state == Lottery.State.OPEN:
            during = day_bounds(yesterday)[0] + timedelta(hours=12)
            self._enter(past, players, now=during)
            lottery_close(lottery_id=past.pk, source=TransitionSource.COMMAND)
        current = daily_lottery_open(day=today, source=TransitionSource.COMMAND)
        if current.state == Lottery.State.OPEN:
            self._enter(current, players[:3], now=None)

        drop = self._demo_drop()

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        shown = staff_password if staff.check_password(staff_password) else "(unchanged)"
        self.stdout.write(f"  staff:   admin / {shown}  -> /admin/")
        for player in players:
            token, _ = Token.objects.get_or_create(user=player)
            consent = "opted in to drop SMS" if player.sms_opted_in else ""
            self.stdout.write(f"  player:  {player.username:6} token {token.key}  {consent}")
        self.stdout.write(
            f"  today's lottery: #{current.pk}; yesterday's: #{past.pk} ({Lottery.objects.get(pk=past.pk).state})"
        )
        self.stdout.write(
            f"  drop #{drop.pk} ({drop.state}): opens {drop.opens_at:%H:%M:%S}, closes {drop.closes_at:%H:%M:%S} UTC;"
            " its opening is announced by SMS to the players who opted in (see the notifier's log)"
        )

    def _demo_drop(self) -> Lottery:
        """A drop to watch: announced at its opening, closed and drawn on time, its SMS sent. One at a time."""
        waiting = Lottery.objects.filter(
            kind=Lottery.Kind.DROP, title=DEMO_DROP, state__in=[Lottery.State.SCHEDULED, Lottery.State.OPEN]
        ).first()
        if waiting is not None:
            return waiting
        now = timezone.now()
        return drop_create(
            title=DEMO_DROP,
            prize="Limited sneakers, size 42",
            prize_quantity=2,
            alternates_count=1,
            opens_at=now + timedelta(minutes=1),
            closes_at=now + timedelta(minutes=5),
            source=TransitionSource.COMMAND,
        )

    def _enter(self, lottery: Lottery, players: list[Player], *, now: Any) -> None:
        for player in players:
            try:
                ballot_submit(lottery_id=lottery.pk, player=player, idempotency_key=f"demo-{lottery.day}", now=now)
            except PlayerBanned:
                continue
