"""What a run records, in memory: transitions by trigger, approval outcomes and their wait, tool calls by
outcome, sessions ended by state and reason, and events written, each exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from statemachines import State

from aura.agent.tools import ToolContext
from aura.errors import ToolError
from aura.hitl.signals import Decision
from aura.ids import new_request_id
from aura.session.session import Session
from tests.support.agent import FakeTool, FixedPlanner, Harness, bounded, returning, tool_plan, tool_step, until
from tests.support.metrics import Labels, Scrape, labels, of

pytestmark = pytest.mark.anyio


@pytest.fixture
async def parts() -> AsyncIterator[Harness]:
    harness = Harness()
    harness.subscribe()
    yield harness
    await harness.aclose()


def moved(parts: Harness, before: Scrape, name: str) -> dict[Labels, float]:
    return of(parts.metrics).deltas(before, name)


async def run_until_waiting(parts: Harness, tool: FakeTool) -> tuple[asyncio.Task[None], Session, str]:
    """A new session's run, waiting for approval of ``tool``: its task, the session, the request's id."""
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step(tool.name))), [tool]).run(session))
    await until(lambda: parts.hub.waiting == 1 and parts.replay.after(session.id, 0) is None)
    return task, session, parts.approval(session)


# -- a session approved, one rejected --------------------------------------------------------------
async def test_an_approved_session_counts_each_transition_its_approval_its_tool_call_its_end_and_its_events(
    parts: Harness,
) -> None:
    before = of(parts.metrics)
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    task, session, request_id = await run_until_waiting(parts, tool)
    assert parts.deliver(session, request_id, Decision.APPROVED)
    await bounded(task)

    assert moved(parts, before, "aura_session_transitions_total") == {
        labels(trigger="start_execution"): 1, labels(trigger="request_approval"): 1,
        labels(trigger="approve"): 1, labels(trigger="finish"): 1,
    }
    assert moved(parts, before, "aura_approval_decisions_total") == {labels(outcome="approved"): 1}
    assert moved(parts, before, "aura_approval_wait_seconds_count") == {labels(): 1}
    assert moved(parts, before, "aura_tool_calls_total") == {labels(tool="send", outcome="completed"): 1}
    assert moved(parts, before, "aura_tool_call_duration_seconds_count") == {labels(tool="send"): 1}
    assert moved(parts, before, "aura_sessions_ended_total") == {labels(state="done", reason="none"): 1}
    assert moved(parts, before, "aura_log_events_written_total") == {labels(): len(parts.logged(session))}


async def test_a_rejected_session_counts_the_rejection_and_its_end_and_no_tool_call(parts: Harness) -> None:
    before = of(parts.metrics)
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    task, session, request_id = await run_until_waiting(parts, tool)
    assert parts.deliver(session, request_id, Decision.REJECTED, "no")
    await bounded(task)

    assert moved(parts, before, "aura_session_transitions_total") == {
        labels(trigger="start_execution"): 1, labels(trigger="request_approval"): 1, labels(trigger="reject"): 1,
    }
    assert moved(parts, before, "aura_approval_decisions_total") == {labels(outcome="rejected"): 1}
    assert moved(parts, before, "aura_tool_calls_total") == {}
    assert moved(parts, before, "aura_sessions_ended_total") == {labels(state="aborted", reason="rejected"): 1}


async def test_no_decision_in_time_is_a_timeout_outcome_waited_for_the_whole_bound(parts: Harness) -> None:
    parts.gate.timeout_seconds = 0.1
    before = of(parts.metrics)
    task, _, _ = await run_until_waiting(parts, FakeTool("send", returning("sent"), requires_approval=True))
    await bounded(task)

    after = of(parts.metrics)
    assert after.deltas(before, "aura_approval_decisions_total") == {labels(outcome="timeout"): 1}
    assert 0.1 <= after.delta(before, "aura_approval_wait_seconds_sum") < 5
    assert after.deltas(before, "aura_sessions_ended_total") == {labels(state="aborted", reason="timeout"): 1}
    assert after.delta(before, "aura_session_transitions_total", trigger="time_out") == 1


async def test_a_cancel_while_waiting_is_a_cancelled_outcome_and_a_drain_is_no_outcome(parts: Harness) -> None:
    before = of(parts.metrics)
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    task, session, _ = await run_until_waiting(parts, tool)
    session.cancel_requested = True
    task.cancel()
    await bounded(task)
    assert moved(parts, before, "aura_approval_decisions_total") == {labels(outcome="cancelled"): 1}
    assert moved(parts, before, "aura_sessions_ended_total") == {labels(state="aborted", reason="cancelled"): 1}

    before = of(parts.metrics)
    task, session, _ = await run_until_waiting(parts, tool)
    session.detach()  # a drain: another replica waits on, so nothing ended here
    task.cancel()
    await bounded(task)  # a detached run stops without touching its session
    assert moved(parts, before, "aura_approval_decisions_total") == {}
    assert moved(parts, before, "aura_sessions_ended_total") == {}


async def test_a_wait_resumed_after_an_adoption_counts_from_when_the_request_was_made(parts: Harness) -> None:
    assert parts.gate.timeout_seconds == 30
    request_id = new_request_id()
    plan = tool_plan(tool_step("send"))
    session = parts.adopt(plan, state=State.AWAITING_APPROVAL, seq=4, pending_request_id=request_id,
                          approval_deadline=time.time() + 0.1)  # asked about 29.9 s ago, elsewhere
    await parts.approvals.create_request({"requestId": request_id, "sessionId": session.id, "status": "pending"})
    before = of(parts.metrics)

    await bounded(parts.gate.decide(session, plan.steps[0], "send", resume=True))

    after = of(parts.metrics)
    assert after.deltas(before, "aura_approval_decisions_total") == {labels(outcome="timeout"): 1}
    assert 29.9 <= after.delta(before, "aura_approval_wait_seconds_sum") < 35


# -- tool calls by outcome ----------------------------------------------------------------------------
async def slow(params: Mapping[str, Any], ctx: ToolContext) -> str:
    await asyncio.sleep(10)
    return "too late"


async def refusing(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise ToolError("tool", "the service said no")


async def broken(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise ValueError("a bug")


@pytest.mark.parametrize(("body", "outcome"), [(refusing, "failed"), (slow, "timeout"), (broken, "crashed")])
async def test_a_tool_call_that_does_not_complete_is_counted_by_how_it_ended(
    parts: Harness, body: Any, outcome: str
) -> None:
    before = of(parts.metrics)
    session = parts.new_session()
    await bounded(parts.runner(FixedPlanner(tool_plan(tool_step("tool"))), [FakeTool("tool", body)],
                               tool_timeout=0.05).run(session))
    after = of(parts.metrics)
    assert after.deltas(before, "aura_tool_calls_total") == {labels(tool="tool", outcome=outcome): 1}
    assert after.deltas(before, "aura_sessions_ended_total") == {labels(state="aborted", reason="failed"): 1}
    assert after.delta(before, "aura_session_transitions_total", trigger="fail") == 1


async def test_a_tool_call_cut_short_by_a_cancel_is_a_cancelled_call(parts: Harness) -> None:
    started = asyncio.Event()

    async def waits(params: Mapping[str, Any], ctx: ToolContext) -> str:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    before = of(parts.metrics)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("waits"))),
                                            [FakeTool("waits", waits)]).run(session))
    await bounded(started.wait())
    session.cancel_requested = True
    task.cancel()
    await bounded(task)
    assert moved(parts, before, "aura_tool_calls_total") == {labels(tool="waits", outcome="cancelled"): 1}
    assert moved(parts, before, "aura_sessions_ended_total") == {labels(state="aborted", reason="cancelled"): 1}
