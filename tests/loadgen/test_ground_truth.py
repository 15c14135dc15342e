"""The ground truth's doors: recording and reading what was injected, the stats endpoint's 506 bursts, the
generator's players, the chaos switches over HTTP, the trigger, and the SMS failures' records."""

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from entries.errors import DuplicateEntry
from entries.models import Ballot, Player
from entries.services import player_ban
from lifecycle.services import drop_create, lottery_close
from loadgen.models import AnomalyKind, InjectedAnomaly
from notifications.gateway import DeliveryFailed, OutgoingSms, SimulatedGateway
from tests.sms import fast_gateway, set_live

pytestmark = pytest.mark.django_db

LOADGEN = {"HTTP_X_INTERNAL_TOKEN": settings.INTERNAL_TOKENS["loadgen"][0]}
DROPS = {"HTTP_X_INTERNAL_TOKEN": settings.INTERNAL_TOKENS["drops"][0]}


def injected(kind: str) -> float:
    return REGISTRY.get_sample_value("lottery_anomalies_injected_total", {"kind": kind}) or 0.0


def record(api, *anomalies, run="run-1", token=LOADGEN):
    return api.post(reverse("loadgen-anomalies"), {"run": run, "anomalies": list(anomalies)}, format="json", **token)


def stats(api, **query):
    return api.get(reverse("stats"), query)


def test_each_reported_anomaly_is_a_row_a_log_event_and_a_count(
    api, make_lottery, client_for, make_player, caplog, django_capture_on_commit_callbacks
):
    drop = make_lottery()
    before = injected(AnomalyKind.LOW_PARTICIPATION)
    caplog.set_level(logging.WARNING, logger="loadgen.services")

    with django_capture_on_commit_callbacks(execute=True):
        answer = record(
            api,
            {"kind": "anomalous_low_participation", "lottery_id": drop.pk, "simulated_at": "2026-01-01T10:00:00Z",
             "details": {"entries": 1}},
            {"kind": "fraudulent_entry", "lottery_id": drop.pk, "details": {"shares": "phone_number"}},
        )  # fmt: skip

    assert answer.status_code == 201, answer.json()
    rows = list(InjectedAnomaly.objects.order_by("id"))
    assert [(r.kind, r.run, r.lottery_id) for r in rows] == [
        ("anomalous_low_participation", "run-1", drop.pk),
        ("fraudulent_entry", "run-1", drop.pk),
    ]
    assert rows[0].details == {"entries": 1}
    assert rows[0].simulated_at is not None and rows[0].simulated_at.isoformat() == "2026-01-01T10:00:00+00:00"
    assert injected(AnomalyKind.LOW_PARTICIPATION) == before + 1
    events = [r for r in caplog.records if r.getMessage() == "anomalous_low_participation"]
    assert len(events) == 1
    assert (events[0].details, events[0].lottery_id) == ({"entries": 1}, drop.pk)

    auditor = client_for(make_player(roles=["compliance"]))
    listed = auditor.get(reverse("loadgen-anomalies"), {"run": "run-1", "kind": "fraudulent_entry"}).json()
    assert [a["id"] for a in listed["results"]] == [rows[1].pk]
    assert auditor.get(reverse("loadgen-anomalies"), {"after": rows[0].pk}).json()["count"] == 1
    assert auditor.get(reverse("loadgen-anomalies"), {"lottery": drop.pk + 1}).json()["count"] == 0


def test_a_report_naming_a_lottery_that_does_not_exist_records_nothing(api):
    answer = record(api, {"kind": "fraudulent_entry", "lottery_id": 987654})

    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "lottery_not_found")
    assert not InjectedAnomaly.objects.exists()


def test_the_platform_records_its_own_sms_failures_but_a_generator_may_not(api):
    refused = record(api, {"kind": "anomalous_sms_delivery_failure"})

    assert refused.status_code == 400
    assert list(refused.json()["error"]["details"]["fields"]["anomalies"]["0"]) == ["kind"]


def test_a_506_burst_answers_exactly_its_requests_in_a_row_then_the_stats_again(api):
    armed = record(api, {"kind": "anomalous_stats_endpoint_506", "details": {"requests": 3}})
    assert armed.status_code == 201, armed.json()
    burst = InjectedAnomaly.objects.get()

    answers = [stats(api) for _ in range(5)]

    assert [a.status_code for a in answers] == [506, 506, 506, 200, 200]
    for answer in answers[:3]:
        assert answer.json()["error"] | {"message": ""} == {
            "code": "stats_unavailable", "message": "", "details": {"anomaly_id": burst.pk, "retry_after_seconds": 1}
        }  # fmt: skip
        assert answer["Retry-After"] == "1"
    burst.refresh_from_db()
    assert burst.served == 3
    assert burst.first_served_at is not None and burst.last_served_at is not None
    assert burst.first_served_at <= burst.last_served_at
    # and once answered, the next burst may be armed
    assert record(api, {"kind": "anomalous_stats_endpoint_506", "details": {"requests": 1}}).status_code == 201


def test_a_second_burst_waits_for_the_first_and_a_switched_off_one_is_refused(api):
    assert record(api, {"kind": "anomalous_stats_endpoint_506", "details": {"requests": 2}}).status_code == 201

    busy = record(api, {"kind": "anomalous_stats_endpoint_506", "details": {"requests": 2}})
    set_live(ANOMALY_STATS_506_ENABLED="false")
    quiet = stats(api)
    off = record(api, {"kind": "anomalous_stats_endpoint_506", "details": {"requests": 2}}, run="run-2")

    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "stats_burst_active")
    assert quiet.status_code == 200  # switched off, the armed burst answers nothing
    assert (off.status_code, off.json()["error"]["code"]) == (409, "anomaly_switched_off")
    assert InjectedAnomaly.objects.count() == 1 and InjectedAnomaly.objects.get().served == 0


@pytest.mark.parametrize(
    "report",
    [
        '{"kind": "fraudulent_entry", "details": {"\\ud9b9": 1}}',  # a lone surrogate: not Unicode
        '{"kind": "fraudulent_entry", "details": {"a": "x\\u0000y"}}',  # a NUL: jsonb refuses it
        '{"kind": "fraudulent_entry", "simulated_at": "9999-12-31T23:59:59-01:00"}',  # in UTC, past year 9999
    ],
)
def test_a_report_the_database_could_not_store_is_refused_as_bad_input(api, report):
    body = f'{{"run": "r", "anomalies": [{report}]}}'

    answer = api.generic("POST", reverse("loadgen-anomalies"), body, content_type="application/json", **LOADGEN)

    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "validation_error")
    assert not InjectedAnomaly.objects.exists()


def test_a_simulated_time_with_any_offset_is_stored_in_utc(api):
    # PostgreSQL takes no offset beyond 15:59; the same moment in UTC it takes
    answer = record(api, {"kind": "fraudulent_entry", "simulated_at": "0276-07-26T18:53:48+19:05"})

    assert answer.status_code == 201, answer.json()
    assert InjectedAnomaly.objects.get().simulated_at.isoformat() == "0276-07-25T23:48:48+00:00"  # type: ignore[union-attr]


def test_a_burst_needs_its_request_count(api):
    for details in ({}, {"requests": 0}, {"requests": "3"}, {"requests": True}):
        answer = record(api, {"kind": "anomalous_stats_endpoint_506", "details": details})
        assert answer.status_code == 400, details
    assert not InjectedAnomaly.objects.exists()


def test_the_stats_count_each_lottery_and_the_platform(api, make_player, enter, settings):
    settings.DROP_CLAIM_SECONDS = 600
    now = timezone.now()
    drop = drop_create(
        title="Counted", prize="Cap", prize_quantity=2, opens_at=now - timedelta(hours=1),
        closes_at=now + timedelta(minutes=1), source="system",
    )  # fmt: skip
    honest = [make_player() for _ in range(4)]
    for player in honest:
        enter(drop, player)
    for shared in ({"phone_number": honest[0].phone_number}, {"external_account_id": honest[1].external_account_id}):
        with pytest.raises(DuplicateEntry):
            enter(drop, make_player(**shared))
    banned = make_player()
    enter(drop, banned)
    player_ban(player_id=banned.pk, reason="fraud", actor=None)
    lottery_close(lottery_id=drop.pk, source="timer", now=drop.closes_at)
    other = drop_create(
        title="Other", prize="Pen", prize_quantity=1, opens_at=now, closes_at=now + timedelta(hours=1), source="system"
    )

    body = stats(api, kind="drop").json()

    rows = {row["lottery_id"]: row for row in body["results"]}
    assert rows[drop.pk] | {"opens_at": None, "closes_at": None} == {
        "lottery_id": drop.pk, "kind": "drop", "state": "drawn", "title": "Counted", "day": str(drop.day),
        "opens_at": None, "closes_at": None, "entries": 7, "valid": 4,
        "rejected": {"shared_phone_number": 1, "shared_external_account": 1}, "void": 1, "winners": 2,
        "awards_claimed": 0, "awards_forfeited": 0,
    }  # fmt: skip
    assert rows[other.pk]["entries"] == 0
    assert body["totals"] == {
        "lotteries": 2, "entries": 7, "valid": 4, "rejected": {"shared_phone_number": 1, "shared_external_account": 1},
        "void": 1, "winners": 2, "awards_claimed": 0, "awards_forfeited": 0,
    }  # fmt: skip
    assert stats(api, kind="daily").json()["totals"]["lotteries"] == 0
    assert stats(api, date="2001-01-01").json()["count"] == 0
    paged = stats(api, page_size=1).json()
    assert (paged["count"], len(paged["results"]), paged["totals"]["entries"]) == (2, 1, 7)
    assert stats(api, date="yesterday").status_code == 400


def test_the_generators_players_are_provisioned_once_with_tokens_and_their_twins(api):
    first = api.post(reverse("loadgen-players"), {"count": 3}, format="json", **LOADGEN)
    again = api.post(reverse("loadgen-players"), {"count": 3}, format="json", **LOADGEN)

    assert first.status_code == again.status_code == 200
    players = {p["username"]: p for p in first.json()["players"]}
    assert first.json() == again.json()  # the same players and tokens on every run
    assert Player.objects.filter(username__startswith="loadgen-").count() == 6
    assert not any(p.has_usable_password() for p in Player.objects.filter(username__startswith="loadgen-"))
    phone_twin, account_twin = players["loadgen-c00001"], players["loadgen-c00002"]
    assert phone_twin["phone_number"] == players["loadgen-p00001"]["phone_number"]
    assert phone_twin["phone_number_given"] != phone_twin["phone_number"]  # written another way, stored as E.164
    assert account_twin["external_account_id"] == players["loadgen-p00002"]["external_account_id"]
    assert account_twin["phone_number"] != players["loadgen-p00002"]["phone_number"]
    ping = api.get(reverse("ping"), HTTP_AUTHORIZATION=f"Token {players['loadgen-p00003']['token']}")
    assert ping.status_code == 200


def test_the_chaos_switches_are_read_as_every_process_sees_them(api):
    set_live(CHEATER_PERCENTAGE="0.25", ANOMALY_TRAFFIC_BURST_ENABLED="off")

    body = api.get(reverse("loadgen-chaos"), **LOADGEN).json()

    assert body["switches"]["CHEATER_PERCENTAGE"] == 0.25
    assert body["switches"]["ANOMALY_TRAFFIC_BURST_ENABLED"] is False
    assert body["switches"]["MIN_EVENT_INTERVAL_MINUTES"] == settings.MIN_EVENT_INTERVAL_MINUTES
    assert body["switches"]["SMS_FAILURE_RATE"] == settings.SMS_FAILURE_RATE
    assert body["set_in_admin"] == ["ANOMALY_TRAFFIC_BURST_ENABLED", "CHEATER_PERCENTAGE"]


def test_the_trigger_makes_a_drop_with_entries_now_and_its_cheats_are_refused_and_recorded(api):
    set_live(CHEATER_PERCENTAGE="0.3")

    answer = api.post(reverse("loadgen-trigger"), {"entries": 40, "seed": "t-1"}, format="json", **LOADGEN)

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    lottery_id = body["lottery"]["id"]
    assert body["lottery"]["state"] == "open" and body["sent"] == 40
    assert body["cheats"] > 0 and body["refused"] == {"duplicate_entry": body["cheats"]}
    rejected = set(Ballot.objects.filter(lottery_id=lottery_id, status="rejected").values_list("id", flat=True))
    recorded = InjectedAnomaly.objects.filter(run=body["run"], kind=AnomalyKind.FRAUDULENT_ENTRY)
    assert {a.details["ballot_id"] for a in recorded} == rejected and len(rejected) == body["cheats"]
    valid = Ballot.objects.filter(lottery_id=lottery_id, status="valid").count()
    assert valid == body["accepted"] == 40 - body["cheats"]


def test_an_injected_sms_failure_is_recorded_and_its_switch_turns_it_off(make_player):
    fast_gateway(SMS_FAILURE_RATE=1)
    before = injected(AnomalyKind.SMS_FAILURE)
    message = OutgoingSms(to="+442079460001", body="You won", idempotency_key="notification-1")

    with pytest.raises(DeliveryFailed):
        SimulatedGateway().send(message)
    set_live(ANOMALY_SMS_FAILURE_ENABLED="false")
    SimulatedGateway().send(message)  # sent: the switch is off

    failure = InjectedAnomaly.objects.get()
    assert failure.kind == AnomalyKind.SMS_FAILURE and failure.details["key"] == "notification-1"
    assert "+442079460001" not in str(failure.details)  # masked, as in the logs
    assert injected(AnomalyKind.SMS_FAILURE) == before + 1


def test_the_loadgen_token_opens_only_the_loadgen_doors(api):
    closes_at = (timezone.now() + timedelta(hours=1)).isoformat()
    drop = {"title": "T", "prize": "P", "prize_quantity": 1, "closes_at": closes_at}

    assert api.post(reverse("drop-create"), drop, format="json", **LOADGEN).status_code == 403
    assert api.get(reverse("loadgen-chaos"), **DROPS).status_code == 403
    assert api.post(reverse("loadgen-players"), {"count": 1}, format="json", **DROPS).status_code == 403
    assert record(api, {"kind": "fraudulent_entry"}, token=DROPS).status_code == 403
    assert api.get(reverse("loadgen-anomalies")).status_code == 403
    assert not Player.objects.exists() and not InjectedAnomaly.objects.exists()
