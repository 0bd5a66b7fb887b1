"""What a malformed HITL signal is reported as, and how loosely typed fields are read (CONTRACT §4.3).

A MalformedSignal carries a message naming the problem and the raw text it was parsed from (the
hub logs both). Written against the survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from aura.errors import MalformedSignal
from aura.hitl.signals import DEFAULT_REJECTION_REASON, Decision, Signal, parse_signal


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", None),  # the JSON error's own text follows the prefix
        (b"\xff\xfe", None),
        ("[1, 2]", "signal is not a JSON object"),
        ('"approval"', "signal is not a JSON object"),
        ('{"type":"approve","requestId":"req_a"}', "signal type must be 'approval' or 'rejection' (got 'approve')"),
        ('{"requestId":"req_a"}', "signal type must be 'approval' or 'rejection' (got None)"),
        (
            '{"type":"approval","status":"rejected","requestId":"req_a"}',
            "signal type 'approval' contradicts status 'rejected'",
        ),
        ('{"type":"rejection"}', "signal has no requestId"),
        ('{"type":"rejection","requestId":""}', "signal has no requestId"),
        ('{"type":"approval","requestId":7}', "signal has no requestId"),
    ],
)
def test_a_malformed_signal_names_its_problem_and_keeps_the_raw_text(raw: str | bytes, message: str | None) -> None:
    with pytest.raises(MalformedSignal) as caught:
        parse_signal(raw)
    assert caught.value.raw == raw
    if message is None:
        assert str(caught.value).startswith("signal is not JSON: ")
        assert len(str(caught.value)) > len("signal is not JSON: ")
    else:
        assert str(caught.value) == message


@pytest.mark.parametrize("reason", [42, ["no"], {"text": "no"}, True])
def test_a_reason_that_is_not_text_is_dropped(reason: Any) -> None:
    raw = json.dumps({"type": "rejection", "requestId": "req_a", "status": "rejected", "reason": reason})
    assert parse_signal(raw).reason is None


def test_a_text_reason_is_kept() -> None:
    raw = json.dumps({"type": "rejection", "requestId": "req_a", "reason": "too risky"})
    assert parse_signal(raw) == Signal("req_a", Decision.REJECTED, reason="too risky")


@pytest.mark.parametrize("timestamp", ["1717000000", True, False, 1.5, None])
def test_a_timestamp_that_is_not_an_integer_is_dropped(timestamp: Any) -> None:
    raw = json.dumps({"type": "approval", "requestId": "req_a", "timestamp": timestamp})
    assert parse_signal(raw).timestamp is None


def test_an_integer_timestamp_is_kept() -> None:
    raw = json.dumps({"type": "approval", "requestId": "req_a", "timestamp": 1717000000})
    assert parse_signal(raw).timestamp == 1717000000


def test_to_json_is_compact_like_main_services() -> None:
    assert Signal("req_a", Decision.APPROVED, timestamp=1).to_json() == (
        '{"type":"approval","requestId":"req_a","status":"approved","timestamp":1}'
    )
    assert Signal("req_b", Decision.REJECTED).to_json() == (
        '{"type":"rejection","requestId":"req_b","status":"rejected","timestamp":null,'
        f'"reason":"{DEFAULT_REJECTION_REASON}"}}'
    )


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,  # nested past Python's recursion limit
        '{"type": ["approval"], "requestId": "req_1"}',  # an unhashable type
        '{"type": "approval", "requestId": "req_1", "pad": "' + "x" * 70_000 + '"}',  # larger than any decision
    ],
    ids=["deep", "list-type", "huge"],
)
def test_a_poisoned_signal_is_malformed_not_an_exception_of_another_kind(raw: str) -> None:
    """Regression (hardening): a deep message raised RecursionError, which tore down the shared subscription."""
    with pytest.raises(MalformedSignal):
        parse_signal(raw)
