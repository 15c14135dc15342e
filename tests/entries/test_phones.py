"""Phone numbers: one E.164 spelling per number, from every door; refusals that say what is wrong; masks for logs."""

import logging

import pytest
from django.urls import reverse

from entries.errors import InvalidPhoneNumber
from entries.models import Ballot, Player
from entries.phones import mask_phone, normalize_phone_number

# (as written, PHONE_DEFAULT_REGION, stored as)
VALID = [
    ("+44 20 7946 0958", "", "+442079460958"),
    ("+44 (0)20 7946 0958", "", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("(020) 7946-0958", "GB", "+442079460958"),
    ("0044 20 7946 0958", "DE", "+442079460958"),  # the international prefix of the region
    ("+1 201-555-0123", "GB", "+12015550123"),  # a country code wins over the region
    ("(201) 555-0123", "US", "+12015550123"),
    ("07946 000958", "GB", "+447946000958"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("+353 86 123 4567", "US", "+353861234567"),
    ("", "GB", ""),
    ("   ", "", ""),
]

# (as written, PHONE_DEFAULT_REGION, the reason in details)
INVALID = [
    ("020 7946 0958", "", "country_code_required"),  # no country code, no region: never guessed
    ("hello", "GB", "not_a_number"),
    ("+44 20 7946", "GB", "not_a_valid_number"),  # digits missing
    ("+44 20 7946 09581", "", "not_a_valid_number"),  # one too many
    ("+1 555 000 0001", "", "not_a_valid_number"),  # area code 555 does not exist
    ("+999 1234 5678", "", "unknown_country_code"),
    ("0" * 80, "GB", "not_a_number"),
]


@pytest.mark.parametrize(("written", "region", "stored"), VALID)
def test_a_number_in_any_spelling_is_stored_as_e164(settings, written, region, stored):
    settings.PHONE_DEFAULT_REGION = region

    assert normalize_phone_number(written) == stored


@pytest.mark.parametrize(("written", "region", "reason"), INVALID)
def test_an_invalid_number_is_refused_saying_why(settings, written, region, reason):
    settings.PHONE_DEFAULT_REGION = region

    with pytest.raises(InvalidPhoneNumber) as refused:
        normalize_phone_number(written)

    assert refused.value.code == "invalid_phone_number"
    assert refused.value.details == {"field": "phone_number", "reason": reason}
    assert refused.value.message


def test_an_explicit_region_overrides_the_setting(settings):
    settings.PHONE_DEFAULT_REGION = "GB"

    assert normalize_phone_number("(201) 555-0123", region="US") == "+12015550123"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+447946000958", "+44******958"),
        ("+12015550123", "+1******123"),
        ("+353861234567", "+353******567"),
        ("020 7946 0958", "******58"),  # a legacy spelling the migration could not read
        ("123", "******"),
        ("", ""),
    ],
)
def test_a_masked_number_shows_its_country_code_and_last_digits_only(number, masked):
    assert mask_phone(number) == masked


# --- The doors: admin, the API, fraud across spellings ----------------------------------------------


def _add_form(**fields: str) -> dict[str, str]:
    return {
        "username": "newcomer",
        "password1": "a-long-enough-password-1",
        "password2": "a-long-enough-password-1",
        "external_account_id": "",
        "usable_password": "true",
        "ban_events-TOTAL_FORMS": "0",
        "ban_events-INITIAL_FORMS": "0",
        "sms_consent_events-TOTAL_FORMS": "0",
        "sms_consent_events-INITIAL_FORMS": "0",
        **fields,
    }


@pytest.mark.django_db
def test_admin_stores_a_number_typed_in_a_national_spelling_as_e164(admin_client, settings):
    settings.PHONE_DEFAULT_REGION = "GB"

    response = admin_client.post(reverse("admin:entries_player_add"), _add_form(phone_number="020 7946 0958"))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert Player.objects.get(username="newcomer").phone_number == "+442079460958"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("written", "message"), [("020 7946 09", "not a valid phone number"), ("call me", "not a phone")]
)
def test_admin_refuses_an_invalid_number_on_its_field(admin_client, settings, written, message):
    settings.PHONE_DEFAULT_REGION = "GB"

    response = admin_client.post(reverse("admin:entries_player_add"), _add_form(phone_number=written))

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["phone_number"]
    assert message in errors["phone_number"][0]
    assert not Player.objects.filter(username="newcomer").exists()


@pytest.mark.django_db
def test_admin_finds_a_player_by_a_number_typed_in_any_spelling(admin_client, settings, make_player):
    settings.PHONE_DEFAULT_REGION = "GB"
    player = make_player(phone_number="+442079460958")
    make_player(phone_number="+442079460123")

    response = admin_client.get(reverse("admin:entries_player_changelist"), {"q": "020 7946 0958"})

    assert list(response.context["cl"].result_list) == [player]
    html = response.content.decode()
    assert "+44******958" in html  # the list masks numbers
    assert "+442079460958" not in html


@pytest.mark.django_db
def test_the_api_refuses_an_invalid_number_in_the_one_error_shape(client_for, make_player):
    player = make_player(phone_number="")

    response = client_for(player).put(
        reverse("my-notifications"), {"drop_announcements": True, "phone_number": "+44 20 7946"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_phone_number",
            "message": "This is not a valid phone number for its country (a digit missing or too many?).",
            "details": {"field": "phone_number", "reason": "not_a_valid_number"},
        }
    }
    player.refresh_from_db()
    assert (player.phone_number, player.sms_opt_in_at) == ("", None)


@pytest.mark.django_db
def test_two_spellings_of_one_number_are_one_number_to_fraud_detection(
    admin_client, settings, client_for, make_lottery
):
    # given PHONE_DEFAULT_REGION=GB, a player added by staff with "+44 20 7946 0958", and a second
    # player (no number on file) who gives "020 7946 0958" through the API
    settings.PHONE_DEFAULT_REGION = "GB"
    admin_client.post(reverse("admin:entries_player_add"), _add_form(phone_number="+44 20 7946 0958"))
    first = Player.objects.get(username="newcomer")
    second = Player.objects.create_user(username="second", password="password-for-tests")
    given = client_for(second).put(
        reverse("my-notifications"), {"drop_announcements": False, "phone_number": "020 7946 0958"}, format="json"
    )
    assert given.status_code == 200, given.content
    lottery = make_lottery()

    # when both enter the same lottery
    accepted = client_for(first).post(reverse("ballot-submit", args=[lottery.pk]))
    refused = client_for(second).post(reverse("ballot-submit", args=[lottery.pk]))

    # then the second is a duplicate entry, stored rejected
    assert accepted.status_code == 201, accepted.content
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "duplicate_entry"
    assert refused.json()["error"]["details"]["reason"] == "shared_phone_number"
    assert Ballot.objects.get(player=second).status == Ballot.Status.REJECTED
    assert set(Ballot.objects.values_list("phone_number", flat=True)) == {"+442079460958"}


@pytest.mark.django_db
def test_the_seeded_demo_players_have_e164_numbers_and_three_opt_ins(tmp_path):
    from django.core.management import call_command

    call_command("seed_demo", stdout=(tmp_path / "out.txt").open("w"))

    demo = Player.objects.filter(username__in=["alice", "bob", "carol", "dave", "erin"])
    assert all(normalize_phone_number(player.phone_number) == player.phone_number for player in demo)
    assert sorted(demo.filter(sms_opt_in_at__isnull=False).values_list("username", flat=True)) == [
        "alice",
        "bob",
        "carol",
    ]
    assert set(demo.exclude(sms_opt_in_at=None).values_list("sms_opt_in_source", flat=True)) == {"import"}


@pytest.mark.django_db
def test_log_lines_that_name_a_number_mask_it(caplog, client_for, make_player):
    player = make_player(phone_number="")
    caplog.set_level(logging.INFO, logger="entries")

    client_for(player).put(
        reverse("my-notifications"), {"drop_announcements": True, "phone_number": "+44 20 7946 0123"}, format="json"
    )

    logged = [record for record in caplog.records if hasattr(record, "phone")]
    assert logged, "the consent change is logged"
    assert {record.phone for record in logged} == {"+44******123"}
    assert all("2079460123" not in str(vars(record)) for record in caplog.records)
