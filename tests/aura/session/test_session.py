"""A session's progress, the `state` events of its transitions, and restoring it from a snapshot."""

from __future__ import annotations

import pytest
from statemachines import AbortReason, SessionMachine, State, Trigger

from aura.auth import Delegation, Principal
from aura.ids import new_session_id
from aura.session.events import EventType
from aura.session.plan import Plan, PlanStep
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import decode, encode_identity, encode_progress

pytestmark = pytest.mark.anyio

STEPS = [PlanStep("s1", "Read", "read mail", tool="mail.list"), PlanStep("s2", "Send", "send mail", tool="mail.send")]


DELEGATION = Delegation({"sub": "1", "tenant_id": "1"}, 1_700_003_600)


def new_session(machine: SessionMachine | None = None, *, agent_id: str | None = None,
                delegation: Delegation | None = None) -> Session:
    session = Session(
        new_session_id(),
        Principal("1", "1"),
        SessionRequest("hi", {"activeApp": "mail"}, agent_id=agent_id, delegation=delegation),
    )
    (machine or SessionMachine()).add(session.model)
    return session


async def fire(session: Session, trigger: Trigger, *, request_id: str | None = None, detail: str | None = None) -> None:
    assert await session.model.fire(trigger, request_id=request_id, detail=detail), f"{trigger} refused"


# -- progress -------------------------------------------------------------------------------------
def test_set_plan_resets_the_step_index_and_bumps_the_plan_version() -> None:
    session = new_session()
    first = Plan("t1", STEPS)
    session.set_plan(first)
    assert (session.plan, session.step_index, session.plan_version) == (first, 0, 1)
    session.record_outcome("s1", "r1")
    second = Plan("t2", STEPS[1:])
    session.set_plan(second)
    assert (session.plan, session.step_index, session.plan_version) == (second, 0, 3)


def test_record_outcome_keeps_the_result_moves_to_the_next_step_and_bumps_the_plan_version() -> None:
    session = new_session()
    session.set_plan(Plan("t", STEPS))
    session.record_outcome("s1", "3 mails")
    session.record_outcome("s2", None)  # a step without a result
    assert session.outcomes == {"s1": "3 mails", "s2": None}
    assert session.step_index == 2
    assert session.plan_version == 3


def test_begin_tool_and_end_tool_track_the_step_whose_tool_runs() -> None:
    session = new_session()
    assert session.tool_started is None
    session.begin_tool(STEPS[1])
    assert session.tool_started == "s2"
    assert session.snapshot(1).tool_started == "s2"
    session.end_tool()
    assert session.tool_started is None
    assert session.plan_version == 0  # not plan progress


def test_begin_approval_sets_the_pending_request_and_the_deadline() -> None:
    session = new_session()
    session.begin_approval("req_1", 1_700_000_030.0)
    assert session.pending_request_id == "req_1" and session.model.pending_request_id == "req_1"
    assert session.approval_deadline == 1_700_000_030.0
    snapshot = session.snapshot(3)
    assert snapshot.pending_request_id == "req_1" and snapshot.approval_deadline == 1_700_000_030.0


@pytest.mark.parametrize(
    ("deadline", "now", "left"),
    [(100.0, 90.0, 10.0), (100.0, 100.0, 0.0), (100.0, 130.0, 0.0), (None, 50.0, 0.0)],
)
def test_approval_time_left_is_never_negative(deadline: float | None, now: float, left: float) -> None:
    session = new_session()
    if deadline is not None:
        session.begin_approval("req_1", deadline)
    assert session.approval_time_left(now) == left


def test_answered_counts_the_characters_sent() -> None:
    session = new_session()
    session.answered(10)
    session.answered(5)
    assert session.answered_chars == 15 and session.snapshot(0).answered_chars == 15


# -- transitions ------------------------------------------------------------------------------------
async def test_take_transition_events_returns_the_state_events_of_fired_transitions_once() -> None:
    session = new_session()
    assert session.take_transition_events() == []
    await fire(session, Trigger.START_EXECUTION)
    session.begin_approval("req_1", 0.0)
    await fire(session, Trigger.REQUEST_APPROVAL)
    await fire(session, Trigger.APPROVE, request_id="req_1")

    taken = session.take_transition_events()
    assert [type_ for type_, _ in taken] == [EventType.STATE] * 3
    assert [data for _, data in taken] == [
        {"sessionId": session.id, "from": "planning", "to": "executing", "trigger": "start_execution"},
        {"sessionId": session.id, "from": "executing", "to": "awaiting_approval", "trigger": "request_approval"},
        {"sessionId": session.id, "from": "awaiting_approval", "to": "executing", "trigger": "approve"},
    ]
    assert session.take_transition_events() == []  # taken once
    await fire(session, Trigger.FINISH)
    assert [data["to"] for _, data in session.take_transition_events()] == ["done"]


async def test_a_refused_trigger_makes_no_event() -> None:
    session = new_session()
    assert not await session.model.fire(Trigger.FINISH)  # planning cannot finish
    assert not await session.model.fire(Trigger.APPROVE, request_id="req_1")
    assert session.take_transition_events() == []
    assert session.state is State.PLANNING


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [(Trigger.REJECT, AbortReason.REJECTED), (Trigger.TIME_OUT, AbortReason.TIMEOUT),
     (Trigger.CANCEL, AbortReason.CANCELLED), (Trigger.FAIL, AbortReason.FAILED)],
)
async def test_the_state_event_of_an_abort_carries_the_reason(trigger: Trigger, reason: AbortReason) -> None:
    session = new_session()
    await fire(session, Trigger.START_EXECUTION)
    session.begin_approval("req_1", 0.0)
    await fire(session, Trigger.REQUEST_APPROVAL)
    session.take_transition_events()

    await fire(session, trigger, request_id="req_1", detail="why")
    [(type_, data)] = session.take_transition_events()
    assert type_ is EventType.STATE
    assert data == {"sessionId": session.id, "from": "awaiting_approval", "to": "aborted",
                    "trigger": trigger.value, "reason": reason.value}
    assert session.state is State.ABORTED
    assert session.snapshot(9).abort_reason is reason and session.snapshot(9).abort_detail == "why"


async def test_each_session_gets_only_its_own_transition_events_on_a_shared_machine() -> None:
    machine = SessionMachine()
    one, two = new_session(machine), new_session(machine)
    await fire(one, Trigger.START_EXECUTION)
    assert two.take_transition_events() == []
    assert [data["sessionId"] for _, data in one.take_transition_events()] == [one.id]


# -- snapshot and restore ---------------------------------------------------------------------------
async def busy_session() -> Session:
    """A session well into its run: plan, an outcome, a tool begun, text answered, waiting for a human."""
    session = new_session(agent_id="agent-7", delegation=DELEGATION)
    await fire(session, Trigger.START_EXECUTION)
    session.set_plan(Plan("thinking", STEPS, conversation=[{"role": "user", "content": "hi"}]))
    session.record_outcome("s1", "3 mails")
    session.begin_tool(STEPS[1])
    session.answered(12)
    session.begin_approval("req_1", 1_700_000_030.5)
    await fire(session, Trigger.REQUEST_APPROVAL)
    session.cancel_requested = True
    return session


def restored_from(snapshot_session: Session, seq: int) -> Session:
    snapshot = snapshot_session.snapshot(seq)
    restored = Session.restore(snapshot)
    SessionMachine().add(restored.model, snapshot.state)  # as the registry attaches it
    return restored


async def test_restore_gives_back_the_same_progress() -> None:
    original = await busy_session()
    restored = restored_from(original, 9)
    assert restored.snapshot(9) == original.snapshot(9)
    assert restored.id == original.id and restored.owner == original.owner and restored.request == original.request
    assert restored.resumed_at_seq == 9
    assert restored.state is State.AWAITING_APPROVAL and restored.pending_request_id == "req_1"
    assert restored.take_transition_events() == []  # attaching in a state fires nothing


async def test_a_restored_session_continues_from_where_it_stopped() -> None:
    original = await busy_session()
    restored = restored_from(original, 9)
    await fire(restored, Trigger.APPROVE, request_id="req_1")  # the pending request survived
    assert [data["to"] for _, data in restored.take_transition_events()] == ["executing"]
    assert restored.approval_time_left(1_700_000_000.5) == 30.0


async def test_restore_from_the_stored_hash_gives_back_the_same_progress() -> None:
    original = await busy_session()
    snapshot = original.snapshot(9)
    fields = {**encode_identity(snapshot), **encode_progress(snapshot, with_plan=True), "cancelRequested": "1"}
    decoded = decode(fields)
    restored = Session.restore(decoded)
    SessionMachine().add(restored.model, decoded.state)
    again = restored.snapshot(9)
    assert again == original.snapshot(9)


async def test_restore_of_an_aborted_session_keeps_the_abort_detail() -> None:
    original = new_session()
    await fire(original, Trigger.FAIL, detail="the planner answered garbage")
    restored = restored_from(original, 3)
    assert restored.snapshot(3) == original.snapshot(3)
