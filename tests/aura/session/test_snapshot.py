"""The snapshot codec: the Redis hash round-trips every field; a broken hash is named; what clients see."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from statemachines import AbortReason, State

from aura.auth import Delegation, StoredToken
from aura.session.plan import Plan, PlanStep
from aura.session.snapshot import (
    F,
    LEGACY_AUTHORIZATION,
    TRACE_CONTEXT,
    Fields,
    Snapshot,
    SnapshotUnreadable,
    decode,
    encode_finished,
    encode_identity,
    encode_progress,
    public_view,
)
from aura.telemetry.tracing import TraceContext

SID = "sess_0123456789abcdef01234567"
TRACE = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "congo=t61rcWkgMzE")
DELEGATION = Delegation({"sub": "42", "tenant_id": "7", "email": "kim@example.com", "aud": ["dwp"]}, 1_700_003_600)

PLAN = Plan(
    thought="메일을 먼저 읽고 답장한다",
    steps=[
        PlanStep("s1", "Read mail", "read the inbox", tool="mail.list", params={"folder": "inbox", "limit": 5},
                 confidence=0.75, call_id="call_1"),
        PlanStep("s2", "Answer", "answer in Korean: 감사합니다", tool=None),
        PlanStep("s3", "Broken", "bad arguments", tool="mail.send", invalid="arguments are not JSON"),
    ],
    conversation=[{"role": "user", "content": "안녕"}, {"role": "assistant", "content": None, "tool_calls": []}],
)


def snapshot(**changes: Any) -> Snapshot:
    base = Snapshot(
        session_id=SID,
        tenant_id="7",
        user_id="42",
        prompt="hi",
        created_at=1_700_000_000.123456,
        updated_at=1_700_000_005.5,
    )
    return replace(base, **changes)


SNAPSHOTS = {
    "planning, bare": snapshot(),
    "executing, with plan and outcomes": snapshot(
        state=State.EXECUTING,
        agent_id="agent-7",
        delegation=DELEGATION,
        trace_context=TRACE,
        plan=PLAN,
        outcomes={"s1": "3 mails", "s2": None},
        step=2,
        seq=11,
        tool_started="s3",
        answered_chars=120,
    ),
    "awaiting approval, non-ASCII prompt and context": snapshot(
        state=State.AWAITING_APPROVAL,
        prompt="회의 일정을 잡아줘 ☕\nplease",
        context={"activeApp": "메일", "nested": {"list": [1, 2.5, None, True, "é"]}},
        plan=PLAN,
        outcomes={"s1": "결과"},
        step=1,
        seq=6,
        pending_request_id="req_0123456789abcdef01234567",
        approval_deadline=1_700_000_030.25,
    ),
    "done": snapshot(state=State.DONE, plan=PLAN, outcomes={"s1": "a", "s2": "b", "s3": None}, step=3, seq=20,
                     answered_chars=4000),
    "aborted on a timeout, with detail": snapshot(
        state=State.ABORTED,
        seq=7,
        pending_request_id="req_x",
        approval_deadline=0.0,
        abort_reason=AbortReason.TIMEOUT,
        abort_detail="no decision in 30 s",
    ),
    "aborted: cancelled, no detail": snapshot(state=State.ABORTED, abort_reason=AbortReason.CANCELLED, seq=2),
}


def stored(s: Snapshot, *, with_plan: bool = True) -> Fields:
    """The hash as the registry creates it and the log writer updates it."""
    return {**encode_identity(s), **encode_progress(s, with_plan=with_plan)}


# -- round trip ----------------------------------------------------------------------------------
@pytest.mark.parametrize("original", SNAPSHOTS.values(), ids=SNAPSHOTS.keys())
def test_encode_then_decode_gives_back_every_field(original: Snapshot) -> None:
    fields = stored(original)
    assert all(isinstance(value, str) for value in fields.values())  # a Redis hash holds strings
    assert decode(fields) == original


@pytest.mark.parametrize("original", SNAPSHOTS.values(), ids=SNAPSHOTS.keys())
def test_without_the_plan_the_progress_fields_still_round_trip(original: Snapshot) -> None:
    fields = stored(original, with_plan=False)
    assert F.PLAN not in fields and F.OUTCOMES not in fields
    assert decode(fields) == replace(original, plan=None, outcomes={})


def test_the_plan_written_once_is_read_back_after_later_progress_without_it() -> None:
    first = SNAPSHOTS["executing, with plan and outcomes"]
    later = replace(first, seq=12, answered_chars=130)
    fields = {**stored(first), **encode_progress(later, with_plan=False)}
    assert decode(fields) == later


def test_agent_id_none_is_stored_empty_and_no_delegation_is_not_stored() -> None:
    fields = stored(snapshot(agent_id=None, delegation=None))
    assert fields[F.AGENT_ID] == "" and F.DELEGATION not in fields
    decoded = decode(fields)
    assert decoded.agent_id is None and decoded.delegation is None


def test_the_delegation_is_stored_as_claims_and_never_as_a_token() -> None:
    fields = stored(SNAPSHOTS["executing, with plan and outcomes"])
    assert json.loads(fields[F.DELEGATION]) == {
        "claims": {"sub": "42", "tenant_id": "7", "email": "kim@example.com", "aud": ["dwp"]}, "exp": 1_700_003_600,
    }
    assert LEGACY_AUTHORIZATION not in fields
    assert not any(value.count(".") == 2 and value.startswith("ey") for value in fields.values())


def test_a_token_an_older_version_stored_is_read_back_but_never_written_again() -> None:
    """Issue 10 item 8: a snapshot written before delegations has the caller's "Bearer <jwt>"."""
    legacy = {**stored(snapshot()), LEGACY_AUTHORIZATION: "Bearer a.b.c"}
    decoded = decode(legacy)
    assert decoded.delegation == StoredToken("a.b.c")
    assert "a.b.c" not in repr(decoded.delegation)
    assert F.DELEGATION not in encode_identity(decoded) and LEGACY_AUTHORIZATION not in encode_identity(decoded)


@pytest.mark.parametrize("value", ["", "   ", "Basic abc", "Bearer", "Bearer   "])
def test_a_stored_authorization_that_is_no_bearer_token_is_no_delegation(value: str) -> None:
    assert decode({**stored(snapshot()), LEGACY_AUTHORIZATION: value}).delegation is None


def test_the_delegation_wins_over_a_stored_token() -> None:
    fields = {**stored(snapshot(delegation=DELEGATION)), LEGACY_AUTHORIZATION: "Bearer a.b.c"}
    assert decode(fields).delegation == DELEGATION


@pytest.mark.parametrize("value", ["not json", "[]", '{"claims": [], "exp": 1}', '{"claims": {}, "exp": "1"}',
                                   '{"claims": {}, "exp": true}', '{"claims": {}}'])
def test_a_delegation_that_is_not_one_is_unreadable(value: str) -> None:
    with pytest.raises(SnapshotUnreadable, match="field delegation is not valid"):
        decode({**stored(snapshot()), F.DELEGATION: value})


# -- a finished session ------------------------------------------------------------------------------
def test_a_finished_session_deletes_what_only_a_live_run_needs() -> None:
    done = replace(SNAPSHOTS["awaiting approval, non-ASCII prompt and context"], state=State.DONE, seq=9,
                   delegation=DELEGATION, trace_context=TRACE, pending_request_id=None, approval_deadline=None)
    fields, dropped = encode_finished(done)
    assert dropped == [F.DELEGATION, LEGACY_AUTHORIZATION, F.CONTEXT, TRACE_CONTEXT]
    assert not set(dropped) & set(fields)
    assert "conversation" not in json.loads(fields[F.PLAN])
    # The hash as it is left: what the live session wrote, then the final write.
    kept = {name: value for name, value in {**stored(done), **fields}.items() if name not in dropped}
    after = decode(kept)
    assert after.plan is not None and done.plan is not None
    assert after == replace(done, context={}, delegation=None, trace_context=None,
                            plan=replace(done.plan, conversation=[]))
    assert public_view(after) == {**public_view(done), F.CONTEXT: {}}


def test_the_callers_trace_context_is_kept_with_the_identity_and_never_shown() -> None:
    fields = encode_identity(snapshot(trace_context=TRACE))
    assert json.loads(fields[TRACE_CONTEXT]) == {"traceparent": TRACE.traceparent, "tracestate": TRACE.tracestate}
    assert decode(stored(snapshot(trace_context=TRACE))).trace_context == TRACE
    assert TRACE_CONTEXT not in encode_identity(snapshot())  # none without tracing or without a traceparent
    assert TRACE_CONTEXT not in public_view(snapshot(trace_context=TRACE))


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"tracestate": "a=b"}', '{"traceparent": 7}'])
def test_a_malformed_trace_context_is_dropped_not_a_reason_to_refuse_the_session(text: str) -> None:
    assert decode({**stored(snapshot()), TRACE_CONTEXT: text}).trace_context is None


def test_a_finished_session_without_a_plan_writes_none() -> None:
    fields, _ = encode_finished(SNAPSHOTS["aborted on a timeout, with detail"])
    assert F.PLAN not in fields and F.OUTCOMES not in fields
    assert (fields[F.ABORT_REASON], fields[F.ABORT_DETAIL]) == ("timeout", "no decision in 30 s")


# -- unreadable hashes -----------------------------------------------------------------------------
def test_a_missing_field_is_named() -> None:
    fields = stored(snapshot())
    del fields[F.TENANT_ID]
    with pytest.raises(SnapshotUnreadable, match="field tenantId is missing") as raised:
        decode(fields)
    assert raised.value.session_id == SID
    assert SID in str(raised.value)
    assert isinstance(raised.value.__cause__, KeyError)


def test_a_missing_session_id_is_named_without_an_id() -> None:
    fields = stored(snapshot())
    del fields[F.SESSION_ID]
    with pytest.raises(SnapshotUnreadable, match="snapshot of [?] is unreadable: field sessionId is missing"):
        decode(fields)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (F.STATE, "bogus"),
        (F.SEQ, "x"),
        (F.STEP, "1.5"),
        (F.ANSWERED_CHARS, "many"),
        (F.APPROVAL_DEADLINE, "soon"),
        (F.CREATED_AT, "yesterday"),
        (F.ABORT_REASON, "boredom"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str) -> None:
    fields = {**stored(snapshot()), name: value}
    with pytest.raises(SnapshotUnreadable) as raised:
        decode(fields)
    assert repr(value) in str(raised.value)
    assert SID in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("plan", ["not json", "{", '["a list"]', '{"steps": [{"id": "s1"}], "thought": "t"}'])
def test_a_plan_that_is_not_a_plan_is_unreadable(plan: str) -> None:
    fields = {**stored(snapshot()), F.PLAN: plan, F.OUTCOMES: "{}"}
    with pytest.raises(SnapshotUnreadable, match=SID):
        decode(fields)


def test_outcomes_that_are_not_json_are_unreadable() -> None:
    fields = {**stored(SNAPSHOTS["done"]), F.OUTCOMES: "{oops"}
    with pytest.raises(SnapshotUnreadable):
        decode(fields)


def test_a_plan_that_is_not_json_is_named_in_the_error() -> None:
    fields = {**stored(snapshot()), F.PLAN: "not json"}
    with pytest.raises(SnapshotUnreadable) as raised:
        decode(fields)
    assert F.PLAN in str(raised.value).split("unreadable:", 1)[1] or "not json" in str(raised.value)


# -- what clients see ------------------------------------------------------------------------------
def test_public_view_hides_the_token_and_the_conversation() -> None:
    original = SNAPSHOTS["executing, with plan and outcomes"]
    view = public_view(original)
    assert F.DELEGATION not in view and LEGACY_AUTHORIZATION not in view
    assert "kim@example.com" not in json.dumps(view)
    assert view[F.PLAN] is not None and "conversation" not in view[F.PLAN]
    assert [s["id"] for s in view[F.PLAN]["steps"]] == ["s1", "s2", "s3"]
    assert view[F.PLAN]["thought"] == PLAN.thought
    assert original.plan is not None and original.plan.conversation == PLAN.conversation  # not changed


def test_public_view_has_every_field_but_the_delegation() -> None:
    names = {value for name, value in vars(F).items() if name.isupper()}
    assert set(public_view(snapshot(delegation=DELEGATION))) == names - {F.DELEGATION}


@pytest.mark.parametrize("original", SNAPSHOTS.values(), ids=SNAPSHOTS.keys())
def test_public_view_types_its_values(original: Snapshot) -> None:
    view = public_view(decode(stored(original)))
    for name in (F.SEQ, F.STEP, F.ANSWERED_CHARS):
        assert type(view[name]) is int
    assert type(view[F.CREATED_AT]) is float and type(view[F.UPDATED_AT]) is float
    assert view[F.APPROVAL_DEADLINE] is None or type(view[F.APPROVAL_DEADLINE]) is float
    assert type(view[F.CANCEL_REQUESTED]) is bool
    assert view[F.STATE] == original.state.value
    assert view[F.ABORT_REASON] == (original.abort_reason.value if original.abort_reason else None)
    assert view[F.CONTEXT] == original.context
    assert view[F.OUTCOMES] == (original.outcomes if original.plan is not None else None)
    json.dumps(view)  # JSON as it is


def test_public_view_of_a_cancelled_request_says_true() -> None:
    view = public_view(decode({**stored(snapshot()), F.CANCEL_REQUESTED: "1"}))
    assert view[F.CANCEL_REQUESTED] is True


def test_public_view_without_plan_has_null_plan_and_outcomes() -> None:
    view = public_view(snapshot())
    assert view[F.PLAN] is None and view[F.OUTCOMES] is None
    assert view[F.AGENT_ID] is None and view[F.PENDING_REQUEST_ID] is None
