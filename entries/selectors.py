"""Read side of players and ballots."""

from django.db.models import QuerySet

from entries.models import Ballot, Player


def ballots_of_player(*, player: Player) -> QuerySet[Ballot]:
    return Ballot.objects.filter(player=player).order_by("-id")
