"""Players and their ballots (a pool's stakes are in ``pools.models``).

The ballot rules that races could break are enforced by the database, not by
check-then-insert code: see the constraints on ``Ballot``.
"""

import unicodedata

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from entries.errors import InvalidPhoneNumber
from entries.phones import normalize_phone_number

# The staff permissions of this app, as services and views check them.
BAN_PLAYER = "entries.ban_player"
UNBAN_PLAYER = "entries.unban_player"
CHANGE_SMS_CONSENT = "entries.change_sms_consent"


class ConsentSource(models.TextChoices):
    """How a player's SMS consent was given or withdrawn."""

    API = "api", "The player, through the API"
    ADMIN = "admin", "Staff, in admin, on the player's word"
    IMPORT = "import", "Imported with the player's record"
    SMS_STOP = "sms_stop", "The player texted STOP"


# How consent may be given, and how withdrawn.
OPT_IN_SOURCES = (ConsentSource.API, ConsentSource.ADMIN, ConsentSource.IMPORT)
OPT_OUT_SOURCES = (ConsentSource.API, ConsentSource.ADMIN, ConsentSource.SMS_STOP)


class Player(AbstractUser):
    """A person who plays (or staff, who are players with ``is_staff``).

    Ban state changes only through ``entries.services.player_ban`` and
    ``player_unban``; admin shows these fields read-only.

    ``phone_number`` is E.164 or empty (``entries.phones``; ``clean`` and the
    services normalise it). SMS consent for drop announcements changes only
    through the consent services (``sms_consent_set``, ``my_notifications_set``,
    ``sms_opt_out``): a player is opted in while ``sms_opt_in_at`` is set,
    and every change is kept in ``SmsConsentEvent``.
    """

    phone_number = models.CharField(
        max_length=32, blank=True, default="", help_text="With its country code (+44 20 7946 0958); stored as E.164."
    )
    external_account_id = models.CharField(
        max_length=128, blank=True, default="", help_text="The player's account id in the operator's systems."
    )
    is_banned = models.BooleanField(default=False)
    banned_at = models.DateTimeField(null=True, blank=True)
    ban_reason = models.TextField(blank=True, default="")
    banned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Consent to drop announcements by SMS: when and how it was given (set
    # while opted in), and when and how it was last withdrawn.
    sms_opt_in_at = models.DateTimeField("SMS opt-in at", null=True, blank=True)
    sms_opt_in_source = models.CharField(
        "SMS opt-in source", max_length=8, choices=ConsentSource.choices, blank=True, default=""
    )
    sms_opt_out_at = models.DateTimeField("SMS opt-out at", null=True, blank=True)
    sms_opt_out_source = models.CharField(
        "SMS opt-out source", max_length=8, choices=ConsentSource.choices, blank=True, default=""
    )

    class Meta:
        verbose_name = "player"
        permissions = [
            ("ban_player", "Can ban players (and void their undrawn ballots)"),
            ("unban_player", "Can lift a player's ban"),
            ("change_sms_consent", "Can record a player's SMS opt-in or opt-out"),
        ]
        constraints = [
            models.CheckConstraint(
                name="player_ban_state_consistent",
                condition=Q(is_banned=False, banned_at__isnull=True) | Q(is_banned=True, banned_at__isnull=False),
            ),
            models.CheckConstraint(
                name="player_sms_opt_in_has_source",
                condition=Q(sms_opt_in_at__isnull=True, sms_opt_in_source="")
                | Q(sms_opt_in_at__isnull=False) & ~Q(sms_opt_in_source=""),
            ),
        ]
        indexes = [
            # A drop's broadcast walks the opted-in players in id order.
            models.Index(name="player_sms_opted_in", fields=["id"], condition=Q(sms_opt_in_at__isnull=False)),
            # An inbound STOP finds its players by number.
            models.Index(name="player_phone_number", fields=["phone_number"], condition=~Q(phone_number="")),
        ]

    def clean(self) -> None:
        """Normalise the phone number (admin's forms call this), or refuse it on its field."""
        super().clean()
        try:
            self.phone_number = normalize_phone_number(self.phone_number)
        except InvalidPhoneNumber as error:
            raise ValidationError({"phone_number": error.message}, code=error.code) from None

    @property
    def sms_opted_in(self) -> bool:
        return self.sms_opt_in_at is not None

    @property
    def public_name(self) -> str:
        """How public lists name a player: never the full name, the phone or the name's length.

        At most a quarter of the username shows, whatever its length: the first
        and last letter from 8 letters on, the first letter from 4 to 7, nothing
        below 4. The mask is always three stars. Letters are counted after NFC
        normalisation, so an accent is never split from its letter.
        """
        name = unicodedata.normalize("NFC", self.username)
        if len(name) >= 8:
            return f"{name[0]}***{name[-1]}"
        if len(name) >= 4:
            return f"{name[0]}***"
        return "***"


class PlayerBanEvent(models.Model):
    """Audit trail of every ban and unban: who, when, why."""

    class Action(models.TextChoices):
        BAN = "ban"
        UNBAN = "unban"

    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="ban_events")
    action = models.CharField(max_length=8, choices=Action.choices)
    reason = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    voided_ballots = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["player", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.player_id} at {self.created_at:%Y-%m-%d %H:%M}"


class SmsConsentEvent(models.Model):
    """Audit trail of SMS consent: every opt-in and opt-out, how, by whom and for which number."""

    class Action(models.TextChoices):
        OPT_IN = "opt_in"
        OPT_OUT = "opt_out"

    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="sms_consent_events")
    action = models.CharField(max_length=8, choices=Action.choices)
    source = models.CharField(max_length=8, choices=ConsentSource.choices)
    phone_number = models.CharField(max_length=32, blank=True, default="")
    note = models.TextField(blank=True, default="")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "SMS consent event"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["player", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} ({self.source}) {self.player_id} at {self.created_at:%Y-%m-%d %H:%M}"


class Ballot(models.Model):
    """One entry of a player into a lottery.

    ``valid`` ballots take part in the draw; ``rejected`` ones were refused
    by fraud detection and are kept with their reason; ``void`` ones were
    valid until their player was banned before the draw.
    """

    class Status(models.TextChoices):
        VALID = "valid"
        REJECTED = "rejected"
        VOID = "void"

    class RejectionReason(models.TextChoices):
        SHARED_PHONE = "shared_phone_number", "Phone number already on another player's ballot"
        SHARED_ACCOUNT = "shared_external_account", "External account already on another player's ballot"

    id = models.BigAutoField(primary_key=True)
    lottery = models.ForeignKey("lotteries.Lottery", on_delete=models.PROTECT, related_name="ballots")
    player = models.ForeignKey(Player, on_delete=models.PROTECT, related_name="ballots")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.VALID)
    # The player's n-th valid ballot in this lottery; the unique constraint
    # below caps the count at MAX_BALLOTS_PER_PLAYER without a pre-check.
    slot = models.PositiveSmallIntegerField(null=True, blank=True)
    # Snapshots at submission: fraud constraints compare these.
    phone_number = models.CharField(max_length=32, blank=True, default="")
    external_account_id = models.CharField(max_length=128, blank=True, default="")
    rejection_reason = models.CharField(max_length=32, choices=RejectionReason.choices, blank=True, default="")
    voided_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                name="ballot_idempotency_key_unique_per_player",
                fields=["player", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
            ),
            models.UniqueConstraint(
                name="ballot_player_slot_unique",
                fields=["lottery", "player", "slot"],
                condition=Q(status="valid"),
            ),
            # Fraud (seed 000): a phone number or external account may appear
            # on valid ballots of one player only, per lottery. Empty values
            # never count as shared.
            ExclusionConstraint(
                name="ballot_phone_number_not_shared",
                index_type="gist",
                expressions=[
                    ("lottery", RangeOperators.EQUAL),
                    ("phone_number", RangeOperators.EQUAL),
                    ("player", RangeOperators.NOT_EQUAL),
                ],
                condition=Q(status="valid") & ~Q(phone_number=""),
            ),
            ExclusionConstraint(
                name="ballot_external_account_not_shared",
                index_type="gist",
                expressions=[
                    ("lottery", RangeOperators.EQUAL),
                    ("external_account_id", RangeOperators.EQUAL),
                    ("player", RangeOperators.NOT_EQUAL),
                ],
                condition=Q(status="valid") & ~Q(external_account_id=""),
            ),
            models.CheckConstraint(
                name="ballot_status_fields_consistent",
                condition=(
                    Q(status="valid", slot__isnull=False, rejection_reason="", voided_at__isnull=True)
                    | Q(status="rejected", slot__isnull=True, voided_at__isnull=True) & ~Q(rejection_reason="")
                    | Q(status="void", voided_at__isnull=False)
                ),
            ),
        ]
        indexes = [
            # The draw reads valid ballot ids in order with an index-only scan.
            models.Index(name="ballot_valid_by_lottery", fields=["lottery", "id"], condition=Q(status="valid")),
            models.Index(name="ballot_by_player", fields=["player", "-id"]),
        ]

    def __str__(self) -> str:
        return f"Ballot {self.pk} ({self.status})"
