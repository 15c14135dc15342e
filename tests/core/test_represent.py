"""``core.api.represent``: a hot path's output from one prototype serializer, the same as a fresh one's."""

from datetime import UTC, datetime

import pytest
from rest_framework import serializers

from core.api import represent
from entries.apis import BallotOutput
from entries.models import Ballot


def test_a_ballot_is_represented_as_its_serializer_would_each_time_with_its_own_values():
    ballots = [
        Ballot(id=1, lottery_id=7, player_id=3, status=Ballot.Status.VALID, rejection_reason="",
               created_at=datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        Ballot(id=2, lottery_id=8, player_id=4, status=Ballot.Status.REJECTED, rejection_reason="duplicate phone",
               created_at=datetime(2026, 12, 2, 11, 30, tzinfo=UTC)),
    ]  # fmt: skip
    for ballot in ballots:
        assert represent(BallotOutput, ballot) == BallotOutput(ballot).data
    assert represent(BallotOutput, ballots[1]) == {
        "id": 2,
        "lottery_id": 8,
        "status": "rejected",
        "rejection_reason": "duplicate phone",
        "created_at": "2026-12-02T11:30:00Z",
    }


def test_each_serializer_class_has_its_own_prototype():
    class Named(serializers.Serializer[dict[str, str]]):
        name = serializers.CharField()

    class Counted(serializers.Serializer[dict[str, int]]):
        count = serializers.IntegerField()

    assert represent(Named, {"name": "a", "count": 1}) == {"name": "a"}
    assert represent(Counted, {"name": "a", "count": 1}) == {"count": 1}


@pytest.mark.django_db
def test_a_submitted_ballot_answers_with_its_stored_values(make_player, make_lottery, client_for):
    lottery = make_lottery()
    response = client_for(make_player()).post(f"/api/v1/lotteries/{lottery.id}/ballots", {}, format="json")
    assert response.status_code == 201
    stored = Ballot.objects.get(lottery=lottery)
    assert response.json() == {
        "id": stored.pk,
        "lottery_id": lottery.pk,
        "status": "valid",
        "rejection_reason": "",
        "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
    }
