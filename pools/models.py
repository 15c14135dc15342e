"""The pool wing's records: how each game's pools run, and every stake received.

Both models moved here from ``lotteries`` and ``entries`` with their tables,
which keep their first names (``db_table``): a rename would buy nothing but a
lock on a hot table.
"""

from django.db import models
from django.db.models import Q

from core.currencies import format_money

# The staff permission of this app, as services and views check it.
PRODUCE_STAKE = "pools.produce_stake"


class PoolGame(models.Model):
    """How the pools of one game are run. A game without a row uses the POOL_* settings."""

    game_id = models.CharField(max_length=100, primary_key=True)
    pool_size = models.PositiveIntegerField(help_text="Distinct players that fill a pool (at least 2).")
    payout_ratio = models.DecimalField(
        max_digits=5, decimal_places=4, help_text="Share of the pot paid to the winner, e.g. 0.9000."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "lotteries_poolgame"
        constraints = [
            models.CheckConstraint(name="pool_game_size", condition=Q(pool_size__gte=2)),
            models.CheckConstraint(name="pool_game_ratio", condition=Q(payout_ratio__gt=0, payout_ratio__lte=1)),
        ]

    def __str__(self) -> str:
        return f"{self.game_id}: pools of {self.pool_size}, payout {self.payout_ratio}"


class Stake(models.Model):
    """A player's stake in a game, received from Kafka (player.v1.staked), applied once.

    Every stake is kept and adds to its pool's pot; only a player's first
    stake in a pool enters them (``ballot``): a pool draws among distinct players.
    """

    stake_id = models.CharField(max_length=100, unique=True)
    player = models.ForeignKey("entries.Player", on_delete=models.PROTECT, related_name="stakes")
    lottery = models.ForeignKey("lotteries.Lottery", on_delete=models.PROTECT, related_name="stakes")
    ballot = models.ForeignKey("entries.Ballot", null=True, blank=True, on_delete=models.PROTECT, related_name="stakes")
    game_id = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=18, decimal_places=4)
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The W3C traceparent of the stake's trace (empty when it came untraced): the pool it fills links to it.
    traceparent = models.CharField(max_length=55, blank=True, default="")

    class Meta:
        db_table = "entries_stake"
        indexes = [models.Index(fields=["lottery", "id"], name="entries_sta_lottery_98c275_idx")]
        constraints = [models.CheckConstraint(name="stake_amount_positive", condition=Q(amount__gt=0))]
        permissions = [("produce_stake", "Can produce a test stake to Kafka (POST /api/v1/stakes)")]

    def __str__(self) -> str:
        return f"Stake {self.stake_id}: {format_money(self.amount, self.currency)} {self.currency}"
