"""The stake parser refuses anything, however hostile, with a reason: it never raises anything else."""

import json

import pytest

from pools.stake_messages import StakeRefused, parse_stake

GOOD = {"stakeId": "s1", "playerId": "p1", "gameId": "g1", "amount": "5.00", "currency": "EUR",
        "occurredAt": "2026-11-23T10:00:00+00:00"}  # fmt: skip


def refusal(value: bytes, headers: dict[str, bytes | None] | None = None) -> str:
    with pytest.raises(StakeRefused) as refused:
        parse_stake(value, headers or {})
    return refused.value.reason


def test_a_good_stake_parses():
    stake = parse_stake(json.dumps(GOOD).encode(), {"messageType": b"player.stakeCreated"})
    assert (stake.stake_id, stake.player_external_id, str(stake.amount), stake.currency) == ("s1", "p1", "5.00", "EUR")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "invalid_json"),
        (b"[" * 100_000, "invalid_json"),
        (
            json.dumps({**GOOD, "stakeId": 0}).encode().replace(b'"stakeId": 0', b'"stakeId": ' + b"9" * 5000),
            "invalid_json",
        ),
        (json.dumps({**GOOD, "amount": "1e999999999"}).encode(), "invalid_amount"),
        (json.dumps({**GOOD, "amount": 1e308}).encode(), "invalid_amount"),
        (json.dumps({**GOOD, "amount": "5.001"}).encode(), "invalid_amount"),
        (json.dumps({**GOOD, "amount": "NaN"}).encode(), "invalid_amount"),
        (json.dumps({**GOOD, "stakeId": "a\u0000b"}).encode(), "invalid_field"),
        (json.dumps({**GOOD, "gameId": True}).encode(), "invalid_field"),
        (json.dumps({**GOOD, "occurredAt": "2026-11-23T10:00:00"}).encode(), "invalid_field"),
        # Valid ISO 8601, but beyond year 9999 (or before year 1) once in UTC: no database row could be read back.
        (json.dumps({**GOOD, "occurredAt": "9999-12-31T23:59:59-23:59"}).encode(), "invalid_field"),
        (json.dumps({**GOOD, "occurredAt": "0001-01-01T00:00:00+23:59"}).encode(), "invalid_field"),
        (json.dumps({**GOOD, "currency": "ZZZ"}).encode(), "unknown_currency"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "playerId"}).encode(), "missing_field"),
    ],
)
def test_hostile_values_are_refused_with_a_reason(value, reason):
    assert refusal(value) == reason


def test_another_message_type_is_refused():
    assert refusal(json.dumps(GOOD).encode(), {"messageType": b"player.deposited"}) == "unexpected_message_type"
