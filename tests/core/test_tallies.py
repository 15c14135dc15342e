"""Tallies of what stores no row: batched per process, written in one statement, by the hour they happened in."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core import tallies
from core.models import HourlyTally
from entries.services import BALLOT_REFUSED
from tests.concurrency import wait_for
from tests.servers import gunicorn_server


@pytest.mark.django_db
def test_a_burst_of_tallies_is_one_statement_adding_to_one_row_per_hour_and_code(settings):
    settings.TALLY_FLUSH_SECONDS = 3600  # batched: nothing is written until the flush
    eleven = datetime(2026, 5, 1, 11, 30, tzinfo=UTC)
    HourlyTally.objects.create(hour=eleven.replace(minute=0), measure="m", dimension="drop", code="c", count=5)

    with CaptureQueriesContext(connection) as tallying:
        for n in range(1000):
            tallies.tally("m", dimension="drop", code="c", at=eleven + timedelta(seconds=n))
        tallies.tally("m", dimension="drop", code="c", at=eleven + timedelta(hours=1))
    assert tallying.captured_queries == []
    assert sorted(tallies.pending().values()) == [1, 1000]

    with CaptureQueriesContext(connection) as flushing:
        assert tallies.flush() == 2
    assert len([q for q in flushing.captured_queries if "INSERT INTO" in q["sql"]]) == 1
    assert dict(HourlyTally.objects.values_list("hour", "count")) == {
        datetime(2026, 5, 1, 11, tzinfo=UTC): 1005,
        datetime(2026, 5, 1, 12, tzinfo=UTC): 1,
    }
    assert tallies.pending() == {} and tallies.flush() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_refusals_in_a_burst_reach_their_row_from_a_real_web_process(make_player, make_lottery, enter, tmp_path):
    # given a lottery whose window has ended, and a gunicorn that flushes its tallies every 2 s
    player = make_player()
    closed = make_lottery(closes_at=timezone.now() - timedelta(minutes=1))
    token = Token.objects.create(user=player).key
    log = tmp_path / "gunicorn.log"
    with gunicorn_server(log, workers=2, env={"TALLY_FLUSH_SECONDS": "2"}) as server:

        def ballot() -> int:
            return server.call("POST", f"/api/v1/lotteries/{closed.pk}/ballots", Authorization=f"Token {token}")[0]

        assert ballot() == 409

        # when a burst of ballots is refused
        assert {ballot() for _ in range(30)} == {409}

        # then within a few flushes the hour's row counts every refusal (the first one included)
        def counted() -> int:
            return sum(HourlyTally.objects.filter(measure=BALLOT_REFUSED, code="lottery_closed").values_list(
                "count", flat=True))  # fmt: skip

        wait_for(lambda: counted() == 31, timeout=30, what="31 refusals tallied")
        rows = HourlyTally.objects.filter(measure=BALLOT_REFUSED)
        assert {(row.dimension, row.code) for row in rows} == {("drop", "lottery_closed")}
        assert rows.count() <= 2  # one per hour: two only if the burst crossed an hour
    assert "Traceback" not in log.read_text(), log.read_text()
