"""Parsing main-service's decision signals (CONTRACT §4.3)."""

from __future__ import annotations

import json

import pytest

from aura.errors import MalformedSignal
from aura.hitl.signals import Decision, Signal, parse_signal


def test_approval_in_any_key_order() -> None:
    raw = '{"timestamp":1706152860,"status":"approved","requestId":"req_1","type":"approval"}'
    assert parse_signal(raw) == Signal("req_1", Decision.APPROVED, None, 1706152860)


def test_rejection_carries_its_reason() -> None:
    raw = json.dumps({"type": "rejection", "requestId": "req_1", "status": "rejected", "reason": "No", "timestamp": 1})
    signal = parse_signal(raw)
    assert signal.decision is Decision.REJECTED and signal.reason == "No"


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        "null",
        '{"type":"approval"}',
        '{"type":"approval","requestId":""}',
        '{"type":"approval","requestId":5}',
        '{"type":"bogus","requestId":"req_1"}',
        '{"action":"approve","requestId":"req_1","sessionId":"s"}',
        '{"type":"approval","requestId":"req_1","status":"rejected"}',
        b"\xff\xfe",
    ],
)
def test_malformed_signals_are_refused(raw: str | bytes) -> None:
    with pytest.raises(MalformedSignal):
        parse_signal(raw)


def test_to_json_round_trips_and_defaults_the_rejection_reason() -> None:
    signal = Signal("req_1", Decision.REJECTED, timestamp=5)
    body = json.loads(signal.to_json())
    assert body == {"type": "rejection", "requestId": "req_1", "status": "rejected", "timestamp": 5, "reason": "User rejected"}
    assert parse_signal(signal.to_json()).decision is Decision.REJECTED
