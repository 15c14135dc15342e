"""Read side of players and ballots."""

from django.db.models import QuerySet

from entries.models import Ballot, Player


def player_as_stored(*, player_id: int) -> Player:
    """The player's row as it is now (a request's user may be older than a change it made)."""
    return Player.objects.get(pk=player_id)


def players_opted_in_to_sms() -> QuerySet[Player]:
    """Players to tell about a drop by SMS: opted in, with a number on file, not banned; in id order."""
    return (
        Player.objects.filter(sms_opt_in_at__isnull=False, is_banned=False, is_active=True)
        .exclude(phone_number="")
        .order_by("id")
    )


def ballots_of_player(*, player: Player) -> QuerySet[Ballot]:
    return Ballot.objects.filter(player=player).order_by("-id")
