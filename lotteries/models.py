"""The Lottery aggregate and its life cycle.

States: (``scheduled`` ->) ``open`` -> ``closed`` -> ``drawn``, or ``cancelled``
when nothing valid was entered or a pool was still short of players when its
wait ended. A lottery whose ``opens_at`` is still ahead when it is created
(a drop set up in advance) is ``scheduled`` until then and takes no ballot.
Every transition goes through ``lotteries.services.lottery_transition`` (or,
for a batch of pools, ``pools.services``, which records the rows that
``transition_row`` builds) under the lottery's row lock, and each one is
recorded as a ``LotteryTransition``.

Lock protocol (what makes the draw see one frozen list of ballots): every
write to a lottery's ballots (insert, void) holds at least a share lock on the
lottery row; close and draw hold it exclusively.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

# The staff permissions of this app, as services and views check them.
CLOSE_LOTTERY = "lotteries.close_lottery"
FORCE_CLOSE_LOTTERY = "lotteries.force_close_lottery"
CREATE_DROP = "lotteries.create_drop"


class Lottery(models.Model):
    class Kind(models.TextChoices):
        DAILY = "daily"
        DROP = "drop"
        POOL = "pool"

    class State(models.TextChoices):
        SCHEDULED = "scheduled"
        OPEN = "open"
        CLOSED = "closed"
        DRAWN = "drawn"
        CANCELLED = "cancelled"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    title = models.CharField(max_length=200)
    # The calendar date the lottery belongs to, in LOTTERY_TIME_ZONE: for a
    # daily lottery its day; for the other kinds the day its window closes.
    day = models.DateField()
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="End of the entrance window; no ballot at or after it.")
    # The prize, a product, and how many units of it there are to give (Q):
    # each winner gets one unit, so a lottery draws at most Q winners.
    prize = models.CharField(max_length=200)
    prize_quantity = models.PositiveIntegerField(default=1, help_text="Units of the prize to give, one per winner.")
    winners_count = models.PositiveIntegerField(default=1)
    # Ranked alternates drawn after the winners from the same shuffle (drops).
    alternates_count = models.PositiveIntegerField(default=0)
    # sha256(seed), published when the lottery opens. The seed itself lives
    # in draws.LotterySeed and is revealed only by the draw.
    seed_commitment = models.CharField(max_length=64)
    # Pools only: the (game, currency) it gathers stakes for, how many distinct
    # players fill it, the staked pot and the share of it paid to the winner.
    game_id = models.CharField(max_length=100, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    pool_size = models.PositiveIntegerField(null=True, blank=True)
    pot = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    payout_ratio = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "lotteries"
        permissions = [
            ("close_lottery", "Can close and draw a lottery whose entrance window has ended"),
            ("force_close_lottery", "Can close and draw a lottery before its entrance window ends"),
            ("create_drop", "Can create a drop"),
        ]
        ordering = ["-day", "-id"]
        constraints = [
            models.UniqueConstraint(name="one_daily_lottery_per_day", fields=["day"], condition=Q(kind="daily")),
            models.CheckConstraint(name="lottery_window_ordered", condition=Q(closes_at__gt=models.F("opens_at"))),
            models.CheckConstraint(name="lottery_has_winners", condition=Q(winners_count__gte=1)),
            models.CheckConstraint(
                name="lottery_winners_within_quantity", condition=Q(winners_count__lte=models.F("prize_quantity"))
            ),
            # At most one pool fills at a time for a (game, currency).
            models.UniqueConstraint(
                name="one_open_pool_per_game_currency",
                fields=["game_id", "currency"],
                condition=Q(kind="pool", state="open"),
            ),
            models.CheckConstraint(
                name="pool_fields_present",
                condition=~Q(kind="pool")
                | Q(pool_size__gte=2, payout_ratio__gt=0, payout_ratio__lte=1) & ~Q(game_id="") & ~Q(currency=""),
            ),
        ]
        indexes = [
            models.Index(name="lottery_due", fields=["closes_at"], condition=Q(state__in=["open", "closed"])),
            models.Index(name="lottery_to_open", fields=["opens_at"], condition=Q(state="scheduled")),
            models.Index(fields=["kind", "state", "-day"]),
        ]

    def __str__(self) -> str:
        return f"{self.title} (#{self.pk}, {self.state})"


# What the public API says of a lottery after its id, in this order; the admin shows them first too.
LOTTERY_PUBLIC_FIELDS = (
    "kind",
    "state",
    "title",
    "day",
    "opens_at",
    "closes_at",
    "prize",
    "prize_quantity",
    "winners_count",
    "alternates_count",
    "seed_commitment",
)


class TransitionSource(models.TextChoices):
    """What moved a lottery from one state to another."""

    BEAT = "beat"
    COMMAND = "command"
    ADMIN = "admin"
    API = "api"
    POOL_FILL = "pool_fill"
    TIMER = "timer"  # the task queued for the moment itself (a drop's opens_at or closes_at)
    SYSTEM = "system"


class LotteryTransition(models.Model):
    """One step of a lottery's life cycle: when, from what, by what, by whom."""

    lottery = models.ForeignKey(Lottery, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=10, choices=Lottery.State.choices, blank=True, default="")
    to_state = models.CharField(max_length=10, choices=Lottery.State.choices)
    source = models.CharField(max_length=10, choices=TransitionSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    forced = models.BooleanField(default=False, help_text="Closed before the end of its entrance window.")
    note = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lottery", "id"]
        constraints = [
            # A state is entered at most once: two racing closes cannot both
            # record a transition even if the row lock were bypassed.
            models.UniqueConstraint(name="transition_once_per_state", fields=["lottery", "to_state"]),
        ]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state} ({self.source})"
