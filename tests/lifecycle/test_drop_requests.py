"""POST /api/v1/drops with an Idempotency-Key: a retried call returns its first drop instead of a second one."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from lifecycle.models import DropRequest
from lifecycle.services import drop_request
from lotteries.errors import DropKeyReused
from lotteries.models import Lottery
from outbox.models import OutboxEvent
from tests.concurrency import run_together
from tests.lifecycle.test_drops import DROPS_TOKEN, drop_terms


def _post(client, terms, key=None, **headers):
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(reverse("drop-create"), terms, format="json", **headers)


@pytest.mark.django_db
def test_a_retry_with_the_same_key_returns_the_first_drop_and_creates_nothing(api):
    terms = drop_terms()

    first = _post(api, terms, "launch-2026-12-04", **DROPS_TOKEN)
    retry = _post(api, terms, "launch-2026-12-04", **DROPS_TOKEN)

    assert (first.status_code, retry.status_code) == (201, 201), retry.json()
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert Lottery.objects.filter(kind="drop").count() == 1
    assert OutboxEvent.objects.filter(event_type="LotteryOpened").count() == 1  # announced once


@pytest.mark.django_db
def test_a_retry_without_opens_at_still_matches_although_now_has_moved(api):
    terms = drop_terms()  # no opens_at: "now", which differs between the two calls
    first = _post(api, terms, "k1", **DROPS_TOKEN)

    retry = _post(api, terms, "k1", **DROPS_TOKEN)

    assert retry.status_code == 201 and retry.json()["id"] == first.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "retry"), [({}, {"winners_count": 3}), ({"winners_count": 3}, {}), ({}, {"alternates_count": 0})]
)
def test_a_default_written_out_on_retry_is_the_same_terms(api, first, retry):
    terms = drop_terms(prize_quantity=3)
    created = _post(api, {**terms, **first}, "k1", **DROPS_TOKEN)

    again = _post(api, {**terms, **retry}, "k1", **DROPS_TOKEN)

    assert again.status_code == 201, again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == created.json()["id"]


@pytest.mark.django_db
def test_the_same_key_with_other_terms_is_refused_and_names_the_first_drop(api):
    first = _post(api, drop_terms(prize_quantity=3), "k1", **DROPS_TOKEN)

    other = _post(api, drop_terms(prize_quantity=4), "k1", **DROPS_TOKEN)

    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["details"] == {"lottery_id": first.json()["id"]}
    assert Lottery.objects.filter(kind="drop").count() == 1


@pytest.mark.django_db
def test_without_a_key_every_call_creates_a_drop(api):
    terms = drop_terms()

    ids = {_post(api, terms, **DROPS_TOKEN).json()["id"] for _ in range(2)}

    assert len(ids) == 2


@pytest.mark.django_db
def test_keys_are_each_callers_own(api, make_player, client_for):
    alice, bob = make_player(roles=["operations"]), make_player(roles=["operations"])
    terms = drop_terms()

    drops = [_post(caller, terms, "weekly").json()["id"] for caller in (client_for(alice), client_for(bob))]
    drops.append(_post(api, terms, "weekly", **DROPS_TOKEN).json()["id"])  # the platform's key

    assert len(set(drops)) == 3
    assert sorted(DropRequest.objects.values_list("actor_id", flat=True), key=str) == sorted(
        [alice.pk, bob.pk, None], key=str
    )


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "with space", "é", "x" * 256])
def test_a_malformed_key_is_a_validation_error_and_creates_nothing(api, key):
    response = _post(api, drop_terms(), key, **DROPS_TOKEN)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "idempotency_key" in response.json()["error"]["details"]["fields"]
    assert not Lottery.objects.exists()


@pytest.mark.django_db
def test_a_refused_caller_learns_nothing_of_a_key(api, make_player, client_for):
    _post(api, drop_terms(), "k1", **DROPS_TOKEN)
    support = client_for(make_player(roles=["support"]))

    assert _post(support, drop_terms(), "k1").status_code == 403
    assert Lottery.objects.filter(kind="drop").count() == 1


def _ask(key, *, opens_at=None, closes_at=None):
    """The service as the API calls it: the drops token's caller (no actor)."""
    return drop_request(
        idempotency_key=key,
        title="Sneaker drop",
        prize="Air Max",
        prize_quantity=3,
        opens_at=opens_at,
        closes_at=closes_at or timezone.now() + timedelta(hours=1),
        source="api",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_retries_with_one_key_make_one_drop():
    closes_at = timezone.now() + timedelta(hours=1)

    results = run_together(*[lambda: _ask("tap-tap-tap", closes_at=closes_at)] * 6)

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({r.lottery.pk for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert Lottery.objects.filter(kind="drop").count() == 1
    assert OutboxEvent.objects.filter(event_type="LotteryOpened").count() == 1


@pytest.mark.django_db
def test_the_service_refuses_other_terms_under_a_used_key():
    closes_at = timezone.now() + timedelta(hours=1)
    first = _ask("k", closes_at=closes_at)

    with pytest.raises(DropKeyReused) as refused:
        _ask("k", opens_at=timezone.now() + timedelta(minutes=5), closes_at=closes_at)
    assert refused.value.details == {"lottery_id": first.lottery.pk}
