"""Tracing's set-up and sampling (core.tracing), and a one-off command's spans written to a file."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from core import tracing

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


def parent(*, sampled: bool) -> object:
    context = SpanContext(TRACE_ID, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(int(sampled)))
    return trace.set_span_in_context(NonRecordingSpan(context))


def decision(ratio: float, name: str, kind: SpanKind, context: object = None) -> Decision:
    result: Decision = tracing.sampler(ratio).should_sample(context, TRACE_ID, name, kind).decision
    return result


def test_a_new_trace_starts_at_an_operation_never_at_a_stray_query_or_redis_command():
    assert decision(1.0, "POST api/v1/stakes", SpanKind.SERVER) == Decision.RECORD_AND_SAMPLE
    assert decision(1.0, "close_lotteries", SpanKind.INTERNAL) == Decision.RECORD_AND_SAMPLE
    assert decision(1.0, "SELECT", SpanKind.CLIENT) == Decision.DROP  # a relay's poll, outside any operation
    assert decision(1.0, "BRPOP", SpanKind.CLIENT) == Decision.DROP
    # Inside a trace, the same calls are kept.
    assert decision(1.0, "SELECT", SpanKind.CLIENT, parent(sampled=True)) == Decision.RECORD_AND_SAMPLE


def test_beats_frequent_sweeps_start_no_trace_but_its_closes_do():
    assert "outbox.tasks.relay_outbox" in tracing.QUIET_TASKS  # registered by the apps
    assert decision(1.0, "apply_async/outbox.tasks.relay_outbox", SpanKind.PRODUCER) == Decision.DROP
    assert decision(1.0, "apply_async/notifications.tasks.sweep_notifications", SpanKind.PRODUCER) == Decision.DROP
    assert (
        decision(1.0, "apply_async/lifecycle.tasks.close_due_lotteries", SpanKind.PRODUCER)
        == Decision.RECORD_AND_SAMPLE
    )
    # A relay kicked by a request's commit belongs to that request's trace.
    kicked = decision(1.0, "apply_async/outbox.tasks.relay_outbox", SpanKind.PRODUCER, parent(sampled=True))
    assert kicked == Decision.RECORD_AND_SAMPLE


def test_the_ratio_decides_new_traces_and_a_trace_is_kept_or_dropped_whole():
    assert decision(0.0, "POST api/v1/stakes", SpanKind.SERVER) == Decision.DROP
    assert decision(0.0, "player.v1.staked process", SpanKind.CONSUMER, parent(sampled=True)) == (
        Decision.RECORD_AND_SAMPLE
    )
    assert decision(1.0, "player.v1.staked process", SpanKind.CONSUMER, parent(sampled=False)) == Decision.DROP


def test_with_tracing_off_the_helpers_make_no_span_and_leave_the_context_alone():
    assert settings.OTEL_ENABLED is False and not tracing.enabled()
    assert tracing.setup("web") is False
    with tracing.span("ballot submit", {tracing.LOTTERY_ID: 1}) as span:
        assert not span.is_recording()
        assert trace.get_current_span() is trace.INVALID_SPAN
    assert tracing.carrier() == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_without_an_endpoint_a_command_writes_one_json_line_per_span_to_the_file(
    tmp_path, make_lottery, make_player, enter
):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at)
    enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    spans_file = tmp_path / "spans.jsonl"
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "OTEL_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "OTEL_TRACES_FILE": str(spans_file),
    }

    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "close_lotteries", "--lottery", str(lottery.pk)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "drawn" in done.stdout
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_name = {span["name"]: span for span in spans}
    command, close = by_name["close_lotteries"], by_name["lottery close"]
    assert command["resource"]["attributes"]["service.name"] == "cli"
    assert command["parent_id"] is None
    assert close["parent_id"] == command["context"]["span_id"]
    assert close["attributes"]["lottery.id"] == lottery.pk
    assert {span["context"]["trace_id"] for span in spans} == {command["context"]["trace_id"]}
