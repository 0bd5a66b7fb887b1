"""How a sparse snapshot hash is read: the defaults of absent or empty fields, and how a bad
one is reported. Hashes written by older versions, or by whoever only sets ``cancelRequested``,
leave fields out. Written against the survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import json

import pytest
from statemachines import State

from aura.session.plan import Plan, PlanStep
from aura.session.snapshot import F, Fields, SnapshotUnreadable, decode, decode_plan, encode_plan

SID = "sess_0123456789abcdef01234567"


def minimal(**extra: str) -> Fields:
    """The fields no snapshot can do without."""
    return {
        F.SESSION_ID: SID,
        F.TENANT_ID: "7",
        F.USER_ID: "42",
        F.PROMPT: "hi",
        F.CREATED_AT: "1700000000.5",
        F.STATE: "planning",
        **extra,
    }


PLAN_TEXT = encode_plan(Plan(thought="t", steps=[PlanStep("s1", "Read", "read it", tool="mail.list")]))


def test_absent_counters_and_context_read_as_zero_and_empty() -> None:
    snapshot = decode(minimal())
    assert (snapshot.seq, snapshot.step, snapshot.answered_chars) == (0, 0, 0)
    assert snapshot.context == {}
    assert snapshot.plan is None and snapshot.outcomes == {}
    assert snapshot.cancel_requested is False


def test_empty_counters_and_context_read_as_zero_and_empty() -> None:
    snapshot = decode(minimal(**{F.SEQ: "", F.STEP: "", F.ANSWERED_CHARS: "", F.CONTEXT: "", F.PLAN: ""}))
    assert (snapshot.seq, snapshot.step, snapshot.answered_chars) == (0, 0, 0)
    assert snapshot.context == {}
    assert snapshot.plan is None


def test_outcomes_are_read_only_with_a_plan() -> None:
    outcomes = json.dumps({"s1": "3 mails"})
    assert decode(minimal(**{F.OUTCOMES: outcomes})).outcomes == {}
    assert decode(minimal(**{F.OUTCOMES: outcomes, F.PLAN: PLAN_TEXT})).outcomes == {"s1": "3 mails"}


def test_a_plan_without_outcomes_has_none_yet() -> None:
    snapshot = decode(minimal(**{F.PLAN: PLAN_TEXT}))
    assert snapshot.plan is not None and [s.id for s in snapshot.plan.steps] == ["s1"]
    assert snapshot.outcomes == {}


def test_a_step_without_confidence_gets_the_default_of_point_nine() -> None:
    text = json.dumps({"thought": "t", "steps": [{"id": "s1", "title": "Read", "description": "read it"}]})
    [step] = decode_plan(text).steps
    assert step.confidence == 0.9
    assert (step.tool, step.params, step.call_id, step.invalid) == (None, {}, None, None)
    assert decode_plan(text).conversation == []


def test_a_snapshot_without_a_session_id_is_unreadable_with_an_empty_id() -> None:
    fields = minimal()
    del fields[F.SESSION_ID]
    with pytest.raises(SnapshotUnreadable) as caught:
        decode(fields)
    assert caught.value.session_id == ""
    assert str(caught.value) == f"snapshot of ? is unreadable: field {F.SESSION_ID} is missing"


def test_a_bad_value_is_reported_with_the_type_of_the_error() -> None:
    with pytest.raises(SnapshotUnreadable) as caught:
        decode(minimal(**{F.STATE: "flying"}))
    assert caught.value.session_id == SID
    assert str(caught.value) == f"snapshot of {SID} is unreadable: ValueError: 'flying' is not a valid State"


def test_a_state_is_read_as_the_state_enum() -> None:
    assert decode(minimal(**{F.STATE: "awaiting_approval"})).state is State.AWAITING_APPROVAL


@pytest.mark.parametrize("name, with_plan", [(F.CONTEXT, False), (F.PLAN, False), (F.OUTCOMES, True)])
def test_a_field_that_is_not_json_is_named_with_the_error_and_the_start_of_its_value(name: str, with_plan: bool) -> None:
    bad = "{" + "x" * 100  # longer than the 60 characters shown
    fields = minimal(**{name: bad})
    if with_plan:
        fields[F.PLAN] = PLAN_TEXT
    with pytest.raises(SnapshotUnreadable) as caught:
        decode(fields)
    assert str(caught.value) == (
        f"snapshot of {SID} is unreadable: ValueError: field {name} is not valid (JSONDecodeError): {bad[:60]!r}"
    )
