import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_ballot_submission_creates_a_valid_ballot(make_player, make_lottery, client_for):
    lottery = make_lottery()
    player = make_player()

    response = client_for(player).post(reverse("ballot-submit", args=[lottery.pk]))

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "valid"
    assert lottery.ballots.filter(player=player, status="valid").count() == 1
