"""The phone numbers already stored, rewritten as E.164 by ``entries.phones``, the one normalising function.

Players' numbers, and the snapshots on the ballots of lotteries not yet drawn
(or cancelled): those are the numbers fraud detection still compares. The
ballots of drawn and cancelled lotteries are history and stay as written.
Numbers written without a country code are read in ``PHONE_DEFAULT_REGION``:
set it before migrating if such numbers are stored.

- A number that cannot be read (or is not a valid number) is kept as it is,
  and printed, masked, with its player's or ballot's id, for staff to fix in
  admin: deleting it would drop fraud evidence, guessing it could merge two
  people.
- Two spellings of one number on valid ballots of two players in one lottery
  would break the fraud constraint once both are E.164. As fraud detection
  would have at submission, the later ballot (higher id) is stored
  ``rejected`` with reason ``shared_phone_number``, and printed. Its
  ``lotteryEntryCreated`` event was already published; no event says a
  ballot was rejected, so the print is the record.

The undrawn lotteries are locked as a close locks them (FOR UPDATE, in id
order), so no ballot is entered and no draw seals a list while their ballots
are rewritten. Reversing it keeps the E.164 spellings, which every version
reads.
"""

from collections.abc import Callable, Iterable
from typing import Any

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from entries.errors import InvalidPhoneNumber
from entries.phones import mask_phone, normalize_phone_number

SHARED_PHONE = "shared_phone_number"  # Ballot.RejectionReason.SHARED_PHONE as it stood
HISTORY_STATES = ("drawn", "cancelled")
BATCH = 2000


def _normalised(raw: str) -> tuple[str, str]:
    """(the E.164 spelling or the raw one, why it was kept: "" when normalised)."""
    try:
        return normalize_phone_number(raw), ""
    except InvalidPhoneNumber as error:
        return raw, str(error.details.get("reason", error.code))


def _update(model: Any, objects: list[Any], fields: list[str]) -> None:
    if objects:
        model.objects.bulk_update(objects, fields, batch_size=BATCH)


def normalise_players(Player: Any, report: Callable[[str], None]) -> int:
    """Rewrite players' numbers; returns how many changed."""
    changed: list[Any] = []
    for player in Player.objects.exclude(phone_number="").only("id", "phone_number").order_by("id").iterator(BATCH):
        number, kept = _normalised(player.phone_number)
        if kept:
            report(f"player {player.pk}: phone number {mask_phone(player.phone_number)} kept as it is ({kept})")
        elif number != player.phone_number:
            player.phone_number = number
            changed.append(player)
    _update(Player, changed, ["phone_number"])
    return len(changed)


def normalise_ballots(Ballot: Any, lottery_ids: Iterable[int], report: Callable[[str], None]) -> tuple[int, int]:
    """Rewrite the ballots' numbers of these lotteries; returns (numbers changed, ballots rejected)."""
    changed_count = rejected_count = 0
    for lottery_id in lottery_ids:
        holders: dict[str, int] = {}  # number -> the player whose valid ballot holds it first
        changed: list[Any] = []
        rejected: list[Any] = []
        ballots = Ballot.objects.filter(lottery_id=lottery_id).exclude(phone_number="").order_by("id")
        for ballot in ballots.only("id", "player_id", "status", "slot", "phone_number").iterator(BATCH):
            number, kept = _normalised(ballot.phone_number)
            if kept:
                report(f"ballot {ballot.pk}: phone number {mask_phone(ballot.phone_number)} kept as it is ({kept})")
            if ballot.status == "valid" and holders.setdefault(number, ballot.player_id) != ballot.player_id:
                ballot.status, ballot.slot, ballot.rejection_reason = "rejected", None, SHARED_PHONE
                rejected.append(ballot)
                report(
                    f"lottery {lottery_id}: ballot {ballot.pk} of player {ballot.player_id} rejected "
                    f"({SHARED_PHONE}: {mask_phone(number)} is on player {holders[number]}'s ballot)"
                )
            if number != ballot.phone_number:
                ballot.phone_number = number
                changed.append(ballot)
        # The rejections first: with them stored, no two players' valid
        # ballots hold one number, so no rewrite can trip the constraint.
        _update(Ballot, rejected, ["status", "slot", "rejection_reason"])
        _update(Ballot, changed, ["phone_number"])
        changed_count += len(changed)
        rejected_count += len(rejected)
    return changed_count, rejected_count


def normalise_phone_numbers(apps: Apps, report: Callable[[str], None] = print) -> None:
    """The migration's work with ``apps``' models (a test calls it with the historical ones and its own ``report``)."""
    Lottery = apps.get_model("lotteries", "Lottery")
    lottery_ids = list(
        Lottery.objects.select_for_update()
        .exclude(state__in=HISTORY_STATES)
        .order_by("id")
        .values_list("id", flat=True)
    )
    players = normalise_players(apps.get_model("entries", "Player"), report)
    ballots, rejected = normalise_ballots(apps.get_model("entries", "Ballot"), lottery_ids, report)
    if players or ballots or rejected:
        report(
            f"phone numbers as E.164: {players} player(s), {ballots} ballot(s) in {len(lottery_ids)} "
            f"lotteries not yet drawn; {rejected} ballot(s) rejected as shared_phone_number"
        )


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    normalise_phone_numbers(apps)


class Migration(migrations.Migration):
    # Lottery comes with entries' own dependencies (a ballot's lottery).
    dependencies = [
        ("entries", "0007_player_sms_consent"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
