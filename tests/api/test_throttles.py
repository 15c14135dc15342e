"""The throttles: DRF's rates and sliding window, all of a request's checked in one Redis call (core.throttling)."""

import time

import pytest
from django.urls import reverse
from redis import Redis
from rest_framework.throttling import SimpleRateThrottle

from tests.api.test_errors import assert_error


@pytest.fixture
def redis_commands(monkeypatch) -> list[str]:
    sent: list[str] = []
    execute_command = Redis.execute_command

    def counting(self: Redis, *args, **options):
        sent.append(str(args[0]).upper())
        return execute_command(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counting)
    return sent


@pytest.mark.django_db
def test_a_ballots_two_throttles_cost_one_redis_call(redis_commands, client_for, make_player, make_lottery):
    client, lottery = client_for(make_player()), make_lottery()

    redis_commands.clear()
    response = client.post(reverse("ballot-submit", args=[lottery.pk]))

    assert response.status_code == 201
    throttle_calls = [c for c in redis_commands if c in {"EVALSHA", "EVAL", "GET", "MGET"}]
    assert throttle_calls == ["EVALSHA"]  # the user rate and the ballot rate together; no GET/SET of histories


@pytest.mark.django_db
def test_only_allowed_requests_count_and_the_tightest_window_gives_retry_after(
    monkeypatch, client_for, make_player, make_lottery
):
    # given 3 requests a minute per player and 2 ballots a minute
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "100000/min", "ballots": "2/min"}
    )
    client = client_for(make_player())
    lotteries = [make_lottery() for _ in range(4)]

    # when the player submits four ballots within the minute
    statuses = [client.post(reverse("ballot-submit", args=[lottery.pk])).status_code for lottery in lotteries[:3]]
    # the third was refused by the ballot rate, but the user rate counted it (as DRF's throttles do):
    # a plain read is now the fourth request of the minute, over the user rate
    read = client.get(reverse("lottery-list"))

    # then two ballots pass, the third is 429 with a Retry-After within the minute, and the read is refused too
    assert statuses == [201, 201, 429]
    error = assert_error(read, 429, "throttled")
    assert 0 < error["details"]["retry_after_seconds"] <= 60
    assert 0 < int(read["Retry-After"]) <= 60


@pytest.mark.django_db
def test_each_player_has_their_own_history(monkeypatch, client_for, make_player, make_lottery):
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "100000/min", "anon": "100000/min", "ballots": "1/min"}
    )
    lottery, other = make_lottery(), make_lottery()
    first, second = client_for(make_player()), client_for(make_player())

    assert first.post(reverse("ballot-submit", args=[lottery.pk])).status_code == 201
    assert second.post(reverse("ballot-submit", args=[lottery.pk])).status_code == 201
    assert first.post(reverse("ballot-submit", args=[other.pk])).status_code == 429


@pytest.mark.django_db
def test_the_window_slides_a_refused_player_is_let_in_once_the_oldest_request_leaves_it(
    monkeypatch, client_for, make_player, make_lottery
):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "1/s", "anon": "100000/min", "ballots": "1/s"})
    client = client_for(make_player())
    lotteries = [make_lottery() for _ in range(3)]

    assert client.post(reverse("ballot-submit", args=[lotteries[0].pk])).status_code == 201
    refused = client.post(reverse("ballot-submit", args=[lotteries[1].pk]))
    time.sleep(1.1)
    later = client.post(reverse("ballot-submit", args=[lotteries[2].pk]))

    assert refused.status_code == 429 and int(refused["Retry-After"]) == 1
    assert later.status_code == 201
