"""Every field of a session reaches its snapshot, and an adopted session gets every one back.

Written against the survivors of ``make mutate`` (docs/TESTING.md): each field is set to a value
other than its default, so dropping it from ``Session.snapshot`` or ``Session.restore`` shows.
"""

from __future__ import annotations

import pytest
from statemachines import AbortReason, SessionMachine, State, Trigger

from aura.auth import Delegation, Principal
from aura.ids import SessionId
from aura.session.plan import Plan, PlanStep
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import Snapshot

pytestmark = pytest.mark.anyio

SID = SessionId("sess_0123456789abcdef01234567")
DELEGATION = Delegation({"sub": "42", "tenant_id": "7", "email": "kim@example.com"}, 1_700_003_600)
PLAN = Plan(thought="t", steps=[PlanStep("s1", "Read", "read it", tool="mail.list"), PlanStep("s2", "Answer", "a")])


def busy_session() -> Session:
    request = SessionRequest("read my mail", {"activeApp": "mail"}, agent_id="agent-7", delegation=DELEGATION)
    session = Session(SID, Principal(user_id="42", tenant_id="7"), request, created_at=1_700_000_000.25)
    SessionMachine().add(session.model)
    session.set_plan(PLAN)
    session.record_outcome("s1", "3 mails")
    session.begin_tool(PLAN.steps[1])
    session.answered(12)
    session.cancel_requested = True
    return session


async def test_a_snapshot_carries_every_field_of_the_session() -> None:
    session = busy_session()
    assert await session.model.fire(Trigger.START_EXECUTION)
    session.begin_approval("req_a", 1_700_000_100.5)
    assert await session.model.fire(Trigger.REQUEST_APPROVAL)
    assert session.snapshot(9) == Snapshot(
        session_id=SID,
        tenant_id="7",
        user_id="42",
        prompt="read my mail",
        context={"activeApp": "mail"},
        agent_id="agent-7",
        delegation=DELEGATION,
        created_at=1_700_000_000.25,
        state=State.AWAITING_APPROVAL,
        seq=9,
        step=1,
        pending_request_id="req_a",
        approval_deadline=1_700_000_100.5,
        tool_started="s2",
        answered_chars=12,
        abort_reason=None,
        abort_detail=None,
        plan=PLAN,
        outcomes={"s1": "3 mails"},
        cancel_requested=True,
    )


async def test_an_aborted_session_restored_from_its_snapshot_is_the_same_session() -> None:
    session = busy_session()
    assert await session.model.fire(Trigger.FAIL, detail="the tool broke")
    snapshot = session.snapshot(4)
    assert (snapshot.abort_reason, snapshot.abort_detail) == (AbortReason.FAILED, "the tool broke")
    restored = Session.restore(snapshot)
    SessionMachine().add(restored.model, snapshot.state)
    assert restored.snapshot(4) == snapshot
    assert restored.resumed_at_seq == 4
    assert restored.model.abort_reason is AbortReason.FAILED
