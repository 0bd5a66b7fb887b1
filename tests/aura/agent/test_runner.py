"""The agent run, in memory: exact event sequences, tool failures, adoption, cancel and lease loss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from statemachines import AbortReason, State

from aura.agent.runner import INTERRUPTED
from aura.agent.tools import ToolContext
from aura.errors import PlannerError, ToolError
from aura.hitl.signals import Decision
from aura.session.events import MAX_RESULT_CHARS
from aura.session.plan import PlanStep
from aura.session.snapshot import F
from tests.support.agent import (
    error_of,
    explanation_of,
    tool_plan,
    FakeTool,
    ToolBody,
    FixedPlanner,
    Harness,
    bounded,
    kinds,
    plain_plan,
    returning,
    state_moves,
    statuses,
    tool_step,
    until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def parts() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.aclose()


def assert_ended_with(parts: Harness, session_id: str, events: list[tuple[str, dict[str, Any]]], last: str) -> None:
    assert events[-1][0] == last
    assert session_id in parts.store.ended


# -- the happy paths ----------------------------------------------------------------------------
async def test_a_plain_plan_ends_done_with_every_event_in_order_and_the_log_closed(parts: Harness) -> None:
    long_thought = "t" * 1500  # two `thought` pieces
    planner = FixedPlanner(plain_plan(long_thought), chunks=("The answer.",))
    session = parts.new_session()

    await bounded(parts.runner(planner).run(session))

    events = parts.logged(session)
    assert kinds(events) == [
        "thought", "thought", "thought", "plan_step", "state",
        "plan_step_update", "plan_step_update", "content", "state",
    ]
    assert [(d["thoughtType"], d["content"]) for k, d in events if k == "thought"] == [
        ("analysis", "Analyzing the request..."), ("planning", "t" * 1000), ("planning", "t" * 500),
    ]
    plan_step = events[3][1]
    assert (plan_step["id"], plan_step["order"], plan_step["status"]) == ("step-1", 0, "pending")
    assert "tool" not in plan_step
    assert state_moves(events) == [("planning", "executing"), ("executing", "done")]
    assert statuses(events, "plan_step_update") == ["executing", "completed"]
    assert events[7][1] == {"content": "The answer.", "format": "markdown"}  # no tool ran: no result
    assert parts.store.seqs(session.id) == list(range(1, 10))
    assert session.state is State.DONE
    assert session.id in parts.store.ended
    assert parts.store.fields[session.id][F.STATE] == "done"
    assert len(parts.machine) == 0  # dropped from the machine and the writer
    assert parts.replay.after(session.id, 0) is None


async def test_a_tool_step_is_committed_as_executing_before_the_tool_runs_and_its_result_is_clipped(
    parts: Harness,
) -> None:
    session = parts.new_session()
    seen_while_running: list[tuple[str, dict[str, Any]]] = []
    snapshot_while_running: dict[str, str] = {}

    async def body(params: Mapping[str, Any], ctx: ToolContext) -> str:
        seen_while_running.extend(parts.logged(session))
        snapshot_while_running.update(parts.store.fields[session.id])
        assert ctx.session_id == session.id and ctx.tenant_id == "1"
        return "r" * (MAX_RESULT_CHARS + 500)

    tool = FakeTool("fetch", body)
    planner = FixedPlanner(tool_plan(tool_step("fetch", {"q": 1}), PlanStep("step-2", "Summarize", "Summarize")))

    await bounded(parts.runner(planner, [tool]).run(session))

    assert tool.calls == [{"q": 1}]
    # Redis had the `executing` event, and the snapshot naming the running tool, before the tool ran.
    assert seen_while_running[-2:] == [
        ("plan_step_update", {"id": "step-1", "status": "executing"}),
        ("tool_execution", {"tool": "fetch", "params": {"q": 1}, "stepId": "step-1", "status": "executing"}),
    ]
    assert snapshot_while_running[F.TOOL_STARTED] == "step-1"
    events = parts.logged(session)
    assert kinds(events)[5:] == [
        "plan_step_update", "tool_execution", "tool_execution", "plan_step_update",
        "plan_step_update", "plan_step_update", "content", "state",
    ]
    completed = events[7][1]
    assert completed["status"] == "completed"
    assert completed["result"] == "r" * MAX_RESULT_CHARS + "..."
    # The answer's last content carries the result: the one call, clipped to the result's budget.
    assert events[11][1]["metadata"] == {"result": {"type": "text", "title": "Run fetch", "content": "r" * 997 + "..."}}
    assert statuses(events, "plan_step_update") == ["executing", "completed", "executing", "completed"]
    assert session.outcomes["step-1"] == "r" * (MAX_RESULT_CHARS + 500)  # clipped on the wire only
    assert parts.store.fields[session.id][F.TOOL_STARTED] == ""
    assert session.state is State.DONE and session.id in parts.store.ended


# -- a step that fails ------------------------------------------------------------------------------
async def hang(params: Mapping[str, Any], ctx: ToolContext) -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def refuse(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise ToolError("flaky", "mail server said no")


async def crash(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise KeyError("secret-internal-detail")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(refuse, "mail server said no", id="tool-error"),
        pytest.param(hang, "timed out after 0.05 s", id="timeout"),
        pytest.param(crash, "flaky crashed (KeyError)", id="unexpected-exception"),
    ],
)
async def test_a_failing_tool_fails_its_step_and_aborts_the_session_with_a_tool_error_last(
    parts: Harness, body: ToolBody, error: str
) -> None:
    tool = FakeTool("flaky", body)
    planner = FixedPlanner(tool_plan(tool_step("flaky"), PlanStep("step-2", "Summarize", "Summarize")))
    session = parts.new_session()

    await bounded(parts.runner(planner, [tool], tool_timeout=0.05).run(session))

    events = parts.logged(session)
    assert kinds(events)[5:] == [
        "plan_step_update", "tool_execution", "tool_execution", "plan_step_update", "state", "content", "error",
    ]
    assert statuses(events, "tool_execution") == ["executing", "failed"]
    assert events[7][1]["error"] == error
    assert statuses(events, "plan_step_update") == ["executing", "failed"]
    assert events[9][1] == {"sessionId": session.id, "from": "executing", "to": "aborted",
                            "trigger": "fail", "reason": "failed"}
    assert error_of(events) == {
        "message": f"flaky failed: {error}", "error": f"flaky failed: {error}",
        "errorType": "ToolError", "code": "E5000", "sessionId": session.id, "reason": "failed",
    }
    assert explanation_of(events) == {
        "content": f"I stopped: flaky failed ({error}).", "format": "markdown",
        "metadata": {"result": {"type": "checklist", "title": "Tool results",
                                "content": [{"label": f"Run flaky: failed: {error}", "checked": False}]}},
    }
    assert "secret-internal-detail" not in str(events)
    assert session.state is State.ABORTED and session.model.abort_reason is AbortReason.FAILED
    assert_ended_with(parts, session.id, events, "error")
    assert parts.store.fields[session.id][F.TOOL_STARTED] == ""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        pytest.param(tool_step("send", {"body": "hi"}), "invalid parameters for send: 'to' is a required property",
                     id="invalid-params"),
        pytest.param(tool_step("send", {"to": 42, "body": "hi"}),
                     "invalid parameters for send: to: 42 is not of type 'string'", id="wrong-type"),
        pytest.param(tool_step("nope"), "unknown tool: nope", id="unknown-tool"),
        pytest.param(PlanStep("step-1", "Send", "Send", "send", {}, invalid="arguments are not JSON"),
                     "arguments are not JSON", id="invalid-call"),
    ],
)
async def test_an_impossible_tool_call_fails_before_any_approval_is_asked(
    parts: Harness, step: PlanStep, message: str
) -> None:
    schema = {"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
              "required": ["to"]}
    tool = FakeTool("send", returning("sent"), requires_approval=True, parameters=schema)
    session = parts.new_session()

    await bounded(parts.runner(FixedPlanner(tool_plan(step)), [tool]).run(session))

    assert parts.approvals.requests == {} and parts.hub.waiting == 0
    assert tool.calls == []
    events = parts.logged(session)
    assert "hitl" not in kinds(events)
    assert kinds(events)[4:] == ["plan_step_update", "tool_execution", "plan_step_update", "state", "content",
                                 "error"]
    assert events[5][1]["status"] == "failed" and events[5][1]["error"] == message
    assert statuses(events, "plan_step_update") == ["executing", "failed"]
    assert state_moves(events)[-1] == ("executing", "aborted")
    error = error_of(events)
    assert (error["errorType"], error["code"], error["reason"]) == ("ToolError", "E5000", "failed")
    assert error["message"] == f"{step.tool} cannot run: {message}"
    assert explanation_of(events)["content"] == f"I could not run {step.tool}: the call was not valid ({message})."
    assert_ended_with(parts, session.id, events, "error")


async def test_a_planner_error_aborts_the_session_with_a_planner_error(parts: Harness) -> None:
    planner = FixedPlanner(PlannerError("the model answered garbage"))
    session = parts.new_session()

    await bounded(parts.runner(planner).run(session))

    events = parts.logged(session)
    assert kinds(events) == ["thought", "state", "content", "error"]
    assert state_moves(events) == [("planning", "aborted")]
    assert events[1][1]["reason"] == "failed"
    assert explanation_of(events) == {  # no tool ran: no result
        "content": "I could not finish: the language model failed (the model answered garbage). Please try again.",
        "format": "markdown",
    }
    error = error_of(events)
    assert error["message"] == "The planner failed: the model answered garbage"
    assert (error["errorType"], error["code"], error["reason"]) == ("PlannerError", "E5000", "failed")
    assert session.model.abort_reason is AbortReason.FAILED
    assert_ended_with(parts, session.id, events, "error")


async def test_redis_failing_under_the_approval_request_aborts_with_an_internal_error(parts: Harness) -> None:
    parts.approvals.fail_create = RedisConnectionError("redis went away")
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()

    await bounded(parts.runner(FixedPlanner(tool_plan(tool_step("send"))), [tool]).run(session))

    events = parts.logged(session)
    assert kinds(events)[4:] == ["plan_step_update", "state", "content", "error"]
    assert state_moves(events)[-1] == ("executing", "aborted")
    error = error_of(events)
    assert error["message"] == "Redis is unavailable (ConnectionError: redis went away)"
    assert explanation_of(events)["content"] == (
        "I stopped because of an error inside Aura (Redis is unavailable (ConnectionError: redis went away)). "
        "Please try again.")
    assert (error["errorType"], error["code"], error["reason"]) == ("InternalError", "E1000", "failed")
    assert tool.calls == [] and parts.hub.waiting == 0
    assert_ended_with(parts, session.id, events, "error")


async def own_timeout(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise TimeoutError("the upstream service did not answer")  # at once, long before the runner's bound


async def own_os_error(params: Mapping[str, Any], ctx: ToolContext) -> str:
    raise FileNotFoundError(2, "No such file", "/srv/secret/config.json")


@pytest.mark.parametrize("body", [own_timeout, own_os_error], ids=["own-timeout-error", "own-os-error"])
async def test_a_tools_own_exception_is_blamed_neither_on_the_tool_bound_nor_on_redis(
    parts: Harness, body: ToolBody
) -> None:
    tool = FakeTool("flaky", body)
    session = parts.new_session()

    await bounded(parts.runner(FixedPlanner(tool_plan(tool_step("flaky"))), [tool], tool_timeout=30).run(session))

    [failed] = [data for kind, data in parts.logged(session) if kind == "tool_execution" and data["status"] == "failed"]
    assert "30 s" not in failed["error"]
    assert "Redis" not in failed["error"] and "/srv/secret" not in failed["error"]


# -- approval through the run ---------------------------------------------------------------------
async def test_an_approved_tool_runs_after_the_approval_and_the_session_ends_done(parts: Harness) -> None:
    parts.subscribe()
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("send"))), [tool]).run(session))
    await until(lambda: parts.hub.waiting == 1 and session.state is State.AWAITING_APPROVAL)
    assert tool.calls == []

    assert parts.deliver(session, parts.approval(session), Decision.APPROVED)
    await bounded(task)

    events = parts.logged(session)
    assert kinds(events)[4:] == [
        "plan_step_update", "state", "hitl", "hitl_request", "state", "plan_step_update",
        "tool_execution", "tool_execution", "plan_step_update", "content", "state",
    ]
    assert events[-2][1]["metadata"] == {"result": {"type": "text", "title": "Run send", "content": "sent"}}
    assert statuses(events, "plan_step_update") == ["executing", "approved", "completed"]
    assert state_moves(events) == [("planning", "executing"), ("executing", "awaiting_approval"),
                                   ("awaiting_approval", "executing"), ("executing", "done")]
    assert tool.calls == [{}]
    assert session.state is State.DONE and parts.hub.waiting == 0


@pytest.mark.parametrize("decision", ["rejected", "timeout"])
async def test_a_tool_without_approval_is_skipped_and_the_session_aborts(parts: Harness, decision: str) -> None:
    parts.subscribe()
    if decision == "timeout":
        parts.gate.timeout_seconds = 0.05
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("send"))), [tool]).run(session))
    await until(lambda: bool(parts.approvals.requests))
    request_id = parts.approval(session)
    if decision == "rejected":
        assert parts.deliver(session, request_id, Decision.REJECTED, "not today")
    await bounded(task)

    events = parts.logged(session)
    assert kinds(events)[-5:] == ["hitl_request", "plan_step_update", "state", "content", "error"]
    assert statuses(events, "plan_step_update") == ["executing", "skipped"]
    assert tool.calls == []
    error = error_of(events)
    if decision == "rejected":
        assert state_moves(events)[-1] == ("awaiting_approval", "aborted")
        assert error["message"] == "send was rejected: not today"
        assert explanation_of(events) == {
            "content": "I did not run send: the request was rejected. Reason: not today", "format": "markdown"}
        assert (error["errorType"], error["code"], error["reason"]) == ("RejectionError", "E2001", "rejected")
        assert parts.approvals.withdrawn == {}
    else:
        assert error["message"] == f"No decision on {request_id} within 0.05 s; the request was withdrawn"
        assert explanation_of(events)["content"] == (
            "I did not run send: nobody approved it within 0.05 s, so I withdrew the request.")
        assert (error["errorType"], error["code"], error["reason"]) == ("TimeoutError", "E5001", "timeout")
        assert parts.approvals.withdrawn == {request_id: "timeout"}
    assert_ended_with(parts, session.id, events, "error")


# -- adopted sessions --------------------------------------------------------------------------------
async def test_a_session_adopted_while_its_tool_ran_is_reported_interrupted_and_the_tool_is_not_run_again(
    parts: Harness,
) -> None:
    tool = FakeTool("send", returning("sent twice!"))
    plan = tool_plan(tool_step("send"))
    planner = FixedPlanner(plan)
    session = parts.adopt(plan, seq=5, tool_started="step-1")

    await bounded(parts.runner(planner, [tool]).run(session))

    assert tool.calls == [] and planner.plans == 0
    events = parts.logged(session)
    assert parts.store.seqs(session.id) == [6, 7, 8, 9, 10]  # after what the previous driver wrote
    assert kinds(events) == ["tool_execution", "plan_step_update", "state", "content", "error"]
    assert events[0][1] == {"tool": "send", "params": {}, "stepId": "step-1", "status": "failed", "error": INTERRUPTED}
    assert events[1][1] == {"id": "step-1", "status": "failed"}
    error = error_of(events)
    assert error["message"] == f"send {INTERRUPTED}"
    assert explanation_of(events)["content"].startswith("I stopped: the server running send went down while it ran.")
    assert explanation_of(events)["metadata"]["result"]["content"] == [
        {"label": f"Run send: failed: {INTERRUPTED}", "checked": False}]
    assert (error["errorType"], error["reason"]) == ("ToolError", "failed")
    assert parts.store.fields[session.id][F.TOOL_STARTED] == ""
    assert_ended_with(parts, session.id, events, "error")


@pytest.mark.parametrize(
    ("chunks", "answered", "sent"),
    [
        pytest.param(("Hello", ", world"), 7, ["world"], id="inside-the-second-chunk"),
        pytest.param(("Hello", ", world"), 5, [", world"], id="at-a-chunk-boundary"),
        pytest.param(("a" * 1000 + "b" * 500,), 1200, ["b" * 300], id="inside-a-long-chunks-second-piece"),
    ],
)
async def test_a_session_adopted_mid_answer_does_not_resend_what_was_already_sent(
    parts: Harness, chunks: tuple[str, ...], answered: int, sent: list[str]
) -> None:
    plan = plain_plan()
    planner = FixedPlanner(plan, chunks=chunks)
    session = parts.adopt(plan, seq=8, step=1, outcomes={"step-1": None}, answered_chars=answered)

    await bounded(parts.runner(planner).run(session))

    events = parts.logged(session)
    assert [data["content"] for kind, data in events if kind == "content"] == sent
    assert kinds(events) == ["content"] * len(sent) + ["state"]
    assert parts.store.fields[session.id][F.ANSWERED_CHARS] == str(sum(map(len, chunks)))
    assert session.state is State.DONE and session.id in parts.store.ended


async def test_a_session_adopted_while_awaiting_approval_keeps_waiting_without_restarting_its_step(
    parts: Harness,
) -> None:
    parts.subscribe()
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    plan = tool_plan(tool_step("send"))
    request_id = "req_" + "a" * 24
    session = parts.adopt(plan, state=State.AWAITING_APPROVAL, seq=6, pending_request_id=request_id,
                          approval_deadline=time.time() + 30)
    await parts.approvals.create_request({"requestId": request_id, "sessionId": session.id, "status": "pending"})
    parts.approvals.decide(session.id, request_id, Decision.APPROVED)  # decided while nobody drove it

    await bounded(parts.runner(FixedPlanner(plan), [tool]).run(session))

    events = parts.logged(session)
    assert kinds(events) == ["state", "plan_step_update", "tool_execution", "tool_execution",
                             "plan_step_update", "content", "state"]
    assert statuses(events, "plan_step_update") == ["approved", "completed"]
    assert list(parts.approvals.requests) == [request_id]  # no second request
    assert tool.calls == [{}] and session.state is State.DONE


# -- cancel and lease loss --------------------------------------------------------------------------
async def test_a_cancelled_session_aborts_cancelled_and_withdraws_its_pending_request(parts: Harness) -> None:
    parts.subscribe()
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("send"))), [tool]).run(session))
    await until(lambda: parts.hub.waiting == 1 and parts.replay.after(session.id, 0) is None)  # waiting
    request_id = parts.approval(session)

    session.cancel_requested = True
    task.cancel()
    await bounded(task)  # a requested cancel is the session's end, not the task's failure

    assert not task.cancelled()
    events = parts.logged(session)
    assert kinds(events)[-4:] == ["hitl_request", "state", "content", "error"]
    assert explanation_of(events) == {"content": "I stopped: the session was cancelled.", "format": "markdown"}
    assert events[-3][1] == {"sessionId": session.id, "from": "awaiting_approval", "to": "aborted",
                             "trigger": "cancel", "reason": "cancelled"}
    error = error_of(events)
    assert (error["errorType"], error["code"], error["reason"]) == ("CancelledError", "E1000", "cancelled")
    assert error["message"] == "The session was cancelled"
    assert parts.approvals.withdrawn == {request_id: "cancelled"}
    assert parts.approvals.requests[request_id]["status"] == "rejected"
    assert tool.calls == [] and parts.hub.waiting == 0
    assert_ended_with(parts, session.id, events, "error")


async def test_a_session_cancelled_while_its_tool_runs_closes_the_tool_execution(parts: Harness) -> None:
    started = asyncio.Event()

    async def slow(params: Mapping[str, Any], ctx: ToolContext) -> str:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    tool = FakeTool("slow", slow)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("slow"))), [tool]).run(session))
    await bounded(started.wait())

    session.cancel_requested = True
    task.cancel()
    await bounded(task)

    events = parts.logged(session)
    assert error_of(events)["errorType"] == "CancelledError"  # this much holds today
    assert statuses(events, "tool_execution") == ["executing", "failed"]
    assert explanation_of(events)["content"] == (
        "I stopped: the session was cancelled while slow was running. It may already have taken effect.")
    assert parts.store.fields[session.id][F.TOOL_STARTED] == ""


async def test_a_cancel_requested_before_the_run_starts_aborts_it_from_planning(parts: Harness) -> None:
    planner = FixedPlanner(plain_plan())
    session = parts.new_session()
    session.cancel_requested = True

    await bounded(parts.runner(planner).run(session))

    events = parts.logged(session)
    assert kinds(events) == ["state", "content", "error"]
    assert state_moves(events) == [("planning", "aborted")]
    assert planner.plans == 0
    assert_ended_with(parts, session.id, events, "error")


async def test_a_detached_session_that_is_cancelled_touches_nothing(parts: Harness) -> None:
    parts.subscribe()
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("send"))), [tool]).run(session))
    await until(lambda: parts.hub.waiting == 1 and parts.replay.after(session.id, 0) is None)
    request_id = parts.approval(session)
    before = list(parts.store.frames[session.id])
    commits = len(parts.store.commits)

    session.detach()  # another instance drives it now
    task.cancel()
    await bounded(task)

    assert parts.store.frames[session.id] == before
    assert len(parts.store.commits) == commits
    assert session.id not in parts.store.ended
    assert parts.approvals.withdrawn == {} and parts.approvals.requests[request_id]["status"] == "pending"
    assert session.state is State.AWAITING_APPROVAL
    assert parts.hub.waiting == 0 and len(parts.machine) == 0


async def test_a_lost_lease_detaches_the_session_and_writes_no_error(parts: Harness) -> None:
    session = parts.new_session()

    async def lose_the_lease(params: Mapping[str, Any], ctx: ToolContext) -> str:
        parts.store.lost.add(session.id)  # another instance took the session meanwhile
        return "done"

    first, second = FakeTool("first", lose_the_lease), FakeTool("second", returning("never"))
    planner = FixedPlanner(tool_plan(tool_step("first"), tool_step("second", step_id="step-2")))

    await bounded(parts.runner(planner, [first, second]).run(session))

    assert session.detached
    assert first.calls == [{}] and second.calls == []
    events = parts.logged(session)
    assert "error" not in kinds(events)
    # Redis has what was written while the lease was ours: up to the first tool's start.
    assert events[-1] == ("tool_execution", {"tool": "first", "params": {}, "stepId": "step-1", "status": "executing"})
    assert session.id not in parts.store.ended
    assert session.state is State.EXECUTING  # the new driver decides what happens next
    assert len(parts.machine) == 0


async def test_a_cancel_while_the_end_is_written_still_lets_the_session_go(parts: Harness) -> None:
    """Regression: a cancel landing in the final close() skipped dropping the session, which then
    stayed in memory (its writer entry and replay frames) for good."""
    parts.store.gate = asyncio.Event()  # Redis is slow to take the last round
    session = parts.new_session()
    run = asyncio.ensure_future(parts.runner(FixedPlanner(plain_plan("Thinking."))).run(session))
    async with asyncio.timeout(5.0):
        while not session.model.is_final:
            await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5.0):
            await run
    parts.store.gate.set()
    assert parts.replay.after(session.id, 0) is None  # released: nothing of it is kept here
