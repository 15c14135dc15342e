"""Seeds, draw records, their stored verification, and awards.

A ``Draw`` is immutable once written: a database trigger (migration 0003)
refuses UPDATE and DELETE on it, so not even a bug or a stray admin can
rewrite a published result. A ``DrawVerificationRecord`` likewise
(migration 0004): what the server once said of a draw stays on record.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class LotterySeed(models.Model):
    """The secret seed a lottery committed to when it opened.

    Never exposed before the draw: no API or admin shows this model; the
    draw copies the seed into its public ``Draw`` record.
    """

    lottery = models.OneToOneField("lotteries.Lottery", on_delete=models.CASCADE, primary_key=True, related_name="+")
    seed = models.BinaryField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:  # never leak the seed into logs or tracebacks
        return f"seed of lottery {self.pk}"

    def __repr__(self) -> str:
        return f"<LotterySeed lottery={self.pk}>"


class Draw(models.Model):
    """The public, verifiable record of one lottery's draw."""

    id = models.BigAutoField(primary_key=True)
    lottery = models.OneToOneField("lotteries.Lottery", on_delete=models.PROTECT, related_name="draw")
    algorithm_version = models.CharField(max_length=32)
    seed_commitment = models.CharField(max_length=64)
    seed = models.CharField(max_length=64, help_text="Revealed seed, hex.")
    entries_digest = models.CharField(max_length=64, help_text="sha256 of the ordered valid ballot ids, hex.")
    entries_count = models.PositiveIntegerField()
    winners_count = models.PositiveIntegerField()
    # In draw order: the first is the first winner picked.
    winning_ballot_ids = ArrayField(models.BigIntegerField())
    # Asked for after the winners, from the same shuffle; in rank order (drops; none for other kinds).
    alternates_count = models.PositiveIntegerField(default=0)
    alternate_ballot_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Units of the prize the draw gave no winner: fewer valid entries than the quantity.
    unawarded_quantity = models.PositiveIntegerField(default=0)
    drawn_at = models.DateTimeField()

    class Meta:
        ordering = ["-drawn_at"]

    def __str__(self) -> str:
        return f"Draw {self.pk} of lottery {self.lottery_id}"


# The published record of a draw, in this order: the API's draw and verification documents and the admin show it.
DRAW_PUBLIC_FIELDS = (
    "algorithm_version",
    "seed_commitment",
    "seed",
    "entries_digest",
    "entries_count",
    "winners_count",
    "winning_ballot_ids",
    "alternates_count",
    "alternate_ballot_ids",
    "unawarded_quantity",
    "drawn_at",
)


class DrawVerificationRecord(models.Model):
    """The server's own recomputation of a draw, computed once and kept (``draw_verification_stored``).

    The public verification endpoint serves it instead of recomputing on every
    request. ``manage.py verify_draw`` and the admin action never read it:
    they recompute from the ballots each time.
    """

    draw = models.OneToOneField(Draw, on_delete=models.PROTECT, primary_key=True, related_name="verification_record")
    commitment_matches = models.BooleanField()
    entries_digest_matches = models.BooleanField()
    winners_match = models.BooleanField()
    alternates_match = models.BooleanField(default=True)
    recomputed_entries_count = models.PositiveIntegerField()
    recomputed_entries_digest = models.CharField(max_length=64)
    recomputed_winning_ballot_ids = ArrayField(models.BigIntegerField())
    recomputed_alternate_ballot_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Verification of draw {self.pk}"

    @property
    def matches(self) -> bool:
        return self.commitment_matches and self.entries_digest_matches and self.winners_match and self.alternates_match


class LotteryAward(models.Model):
    """A winner's award. A drop's must be claimed by its winner before ``claim_deadline``; one unclaimed
    by then, or whose winner is banned first, is forfeited with its reason, and the draw's next alternate
    gets an award of the same rank (``promoted_from`` names the forfeited one)."""

    class Status(models.TextChoices):
        PLAYED_OUT = "played_out"  # awarded (a drop's: waiting for its claim)
        CLAIMED = "claimed"
        FORFEITED = "forfeited"

    class ForfeitReason(models.TextChoices):
        UNCLAIMED = "unclaimed", "not claimed in time"
        BANNED = "banned", "winner banned before claiming"

    id = models.BigAutoField(primary_key=True)
    lottery = models.ForeignKey("lotteries.Lottery", on_delete=models.PROTECT, related_name="awards")
    draw = models.ForeignKey(Draw, on_delete=models.PROTECT, related_name="awards")
    ballot = models.OneToOneField("entries.Ballot", on_delete=models.PROTECT, related_name="award")
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="awards")
    rank = models.PositiveIntegerField(help_text="1 for the first winner drawn.")
    prize = models.CharField(max_length=200, blank=True, default="")
    win_sum = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLAYED_OUT)
    # Drops: the claim window, and what became of the award.
    claim_deadline = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    forfeited_at = models.DateTimeField(null=True, blank=True)
    forfeit_reason = models.CharField(max_length=16, choices=ForfeitReason.choices, blank=True, default="")
    # A promoted alternate's award: the forfeited award it replaces, and its place among the draw's alternates.
    promoted_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="promoted_to"
    )
    alternate_rank = models.PositiveIntegerField(null=True, blank=True, help_text="1 for the draw's first alternate.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lottery", "rank", "id"]
        constraints = [
            # One standing award per rank: a forfeited one gives its rank to the promoted alternate.
            models.UniqueConstraint(
                name="award_rank_unique_per_draw",
                fields=["draw", "rank"],
                condition=~models.Q(status="forfeited"),
            ),
            models.CheckConstraint(
                name="award_forfeited_with_reason",
                condition=models.Q(status="forfeited", forfeited_at__isnull=False) & ~models.Q(forfeit_reason="")
                | ~models.Q(status="forfeited") & models.Q(forfeit_reason=""),
            ),
        ]

    def __str__(self) -> str:
        return f"Award {self.pk}: lottery {self.lottery_id}, rank {self.rank}"
