"""How public lists name a player: at most a quarter of the username, never its length."""

import unicodedata
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from entries.models import Player
from lifecycle.services import lottery_close
from lotteries.models import TransitionSource

LENGTHS_1_TO_10 = {
    "a": "***",
    "ab": "***",
    "bob": "***",
    "dave": "d***",
    "alice": "a***",
    "carole": "c***",
    "maxwell": "m***",
    "margaret": "m***t",
    "josephine": "j***e",
    "alexandrea": "a***a",
}


def test_a_name_of_each_length_from_1_to_10_shows_at_most_a_quarter_of_it():
    shown = {username: Player(username=username).public_name for username in LENGTHS_1_TO_10}

    assert shown == LENGTHS_1_TO_10
    for username, public in shown.items():
        assert len(public.replace("***", "")) <= len(username) / 4  # never more than a quarter revealed
        assert public.count("*") == 3  # the same mask whatever the length


def test_non_ascii_names_are_masked_by_letter():
    names = ["Zoë", "Ωmega", "Łukasz", "Ñandú-Rodríguez", "日本語ユーザー名前", "Élodie.Ø"]

    assert [Player(username=name).public_name for name in names] == ["***", "Ω***", "Ł***", "Ñ***z", "日***前", "É***Ø"]


def test_a_decomposed_accent_is_never_split_from_its_letter():
    # "Beyoncé" written with a combining accent is 8 code points but 7 letters
    decomposed = unicodedata.normalize("NFD", "Beyoncé")
    assert len(decomposed) == 8

    assert Player(username=decomposed).public_name == "B***"
    assert Player(username=unicodedata.normalize("NFD", "Éloïse-René")).public_name == "É***é"


@pytest.mark.django_db
def test_a_three_letter_winner_is_listed_without_any_of_its_letters(api, make_player, make_lottery, enter):
    # given a drawn lottery won by "bob"
    closes_at = timezone.now() - timedelta(minutes=5)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(username="bob"), now=closes_at - timedelta(minutes=1))
    lottery_close(lottery_id=lottery.pk, source=TransitionSource.SYSTEM)

    # when the public lists are read
    by_day = api.get(reverse("winners"), {"date": lottery.day.isoformat()}).json()["results"]
    by_lottery = api.get(reverse("lottery-winners", args=[lottery.pk])).json()["results"]
    detail = api.get(reverse("lottery-detail", args=[lottery.pk])).json()

    # then none of them shows a letter of the name
    assert [w["player"] for w in by_day] == [w["player"] for w in by_lottery] == ["***"]
    assert [w["player"] for w in detail["winners"]] == ["***"]
