"""The run with the AI-workspace page's events on (the default, AURA_WORKSPACE_EVENTS=true): exact
sequences, one card per tool call, and the explanation before every error (docs/EVENTS.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from aura.agent.tools import ToolContext
from aura.errors import PlannerError, ToolError
from aura.hitl.signals import Decision
from aura.session.plan import PlanStep
from tests.support.agent import (
    FakeTool,
    FixedPlanner,
    Harness,
    assert_workspace_events,
    bounded,
    error_of,
    explanation_of,
    kinds,
    plain_plan,
    returning,
    terminal_cards,
    tool_plan,
    tool_step,
    until,
)

pytestmark = pytest.mark.anyio

KOREAN_PROMPT = "kim@example.com 에게 회의 일정 메일 보내줘"
KOREAN_REASON = "사용자가 작업을 거부했습니다."


@pytest.fixture
async def parts() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.aclose()


async def test_a_plain_answer_mirrors_each_thought_and_has_no_card_and_no_result(parts: Harness) -> None:
    session = parts.new_session()
    await bounded(parts.runner(FixedPlanner(plain_plan()), workspace_events=True).run(session))

    events = parts.logged(session)
    assert kinds(events) == [
        "thought", "thought_chain", "thought", "thought_chain", "plan_step", "thought_chain", "state",
        "plan_step_update", "plan_step_update", "content", "state",
    ]
    assert_workspace_events(events)
    assert events[5][1]["content"] == "Plan:\n1. Answer"
    assert events[9][1] == {"content": "The answer.", "format": "markdown"}


async def test_a_plan_without_steps_is_not_listed(parts: Harness) -> None:
    session = parts.new_session()
    planner = FixedPlanner(tool_plan(), chunks=("Hello.",))
    await bounded(parts.runner(planner, workspace_events=True).run(session))
    events = parts.logged(session)
    assert kinds(events) == ["thought", "thought_chain", "thought", "thought_chain", "state", "content", "state"]


async def test_tool_calls_get_one_card_each_at_their_end_and_the_answer_carries_the_checklist(parts: Harness) -> None:
    fetch, count = FakeTool("fetch", returning("3 rows")), FakeTool("count", returning("7"))
    plan = tool_plan(tool_step("fetch", {"q": 1}), tool_step("count", step_id="step-2"))
    session = parts.new_session()
    await bounded(parts.runner(FixedPlanner(plan, chunks=("a" * 1500,)), [fetch, count],
                               workspace_events=True).run(session))

    events = parts.logged(session)
    assert kinds(events)[6:] == [
        "thought_chain", "state",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "content", "content", "state",
    ]
    assert_workspace_events(events)
    assert terminal_cards(events) == [
        {"tool": "fetch", "params": {"q": 1}, "stepId": "step-1", "status": "completed", "result": "3 rows"},
        {"tool": "count", "params": {}, "stepId": "step-2", "status": "completed", "result": "7"},
    ]
    first, last = (data for kind, data in events if kind == "content")
    assert first == {"content": "a" * 1000, "format": "markdown"}  # only the last piece carries the result
    assert last == {"content": "a" * 500, "format": "markdown", "metadata": {"result": {
        "type": "checklist", "title": "Tool results",
        "content": [{"label": "Run fetch: 3 rows", "checked": True}, {"label": "Run count: 7", "checked": True}],
    }}}


async def test_an_empty_answer_after_tools_still_carries_the_result(parts: Harness) -> None:
    session = parts.new_session()
    planner = FixedPlanner(tool_plan(tool_step("fetch")), chunks=())
    await bounded(parts.runner(planner, [FakeTool("fetch", returning("ok"))], workspace_events=True).run(session))
    [answer] = [data for kind, data in parts.logged(session) if kind == "content"]
    assert answer == {"content": "Done.", "format": "markdown",
                      "metadata": {"result": {"type": "text", "title": "Run fetch", "content": "ok"}}}


async def approval_run(parts: Harness, prompt: str, decision: Decision | None,
                       reason: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    parts.subscribe()
    tool = FakeTool("send_email", returning("email m1 placed in outbox"), requires_approval=True)
    session = parts.new_session(prompt)
    plan = tool_plan(PlanStep("step-1", "Send the email", "Send it", "send_email", {"to": "kim@example.com"}))
    task = asyncio.create_task(parts.runner(FixedPlanner(plan, chunks=("Sent.",)), [tool],
                                            workspace_events=True).run(session))
    await until(lambda: bool(parts.approvals.requests))
    if decision is not None:
        assert parts.deliver(session, parts.approval(session), decision, reason)
    await bounded(task)
    return parts.logged(session)


async def test_an_approved_call_gets_its_card_after_the_approval(parts: Harness) -> None:
    events = await approval_run(parts, "Send an email to kim@example.com", Decision.APPROVED)
    assert kinds(events)[5:] == [
        "thought_chain", "state", "plan_step_update", "state", "hitl", "hitl_request", "state",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "content", "state",
    ]
    assert_workspace_events(events)
    assert [card["status"] for card in terminal_cards(events)] == ["completed"]
    assert events[-2][1]["metadata"]["result"] == {
        "type": "text", "title": "Send the email", "content": "email m1 placed in outbox"}


async def test_a_korean_rejection_is_explained_in_korean_with_the_reason_and_no_card(parts: Harness) -> None:
    events = await approval_run(parts, KOREAN_PROMPT, Decision.REJECTED, KOREAN_REASON)
    assert kinds(events)[-5:] == ["hitl_request", "plan_step_update", "state", "content", "error"]
    assert_workspace_events(events)
    assert terminal_cards(events) == []  # nothing ran
    assert explanation_of(events) == {
        "content": f"승인이 거부되어 send_email 작업을 실행하지 않았습니다. 사유: {KOREAN_REASON}", "format": "markdown"}
    assert error_of(events)["errorType"] == "RejectionError"


async def test_a_timeout_is_explained_in_the_prompts_language(parts: Harness) -> None:
    parts.gate.timeout_seconds = 0.05
    events = await approval_run(parts, KOREAN_PROMPT, None)
    assert kinds(events)[-5:] == ["hitl_request", "plan_step_update", "state", "content", "error"]
    assert explanation_of(events)["content"] == (
        "0.05초 안에 승인되지 않아 요청을 철회했습니다. send_email 작업은 실행하지 않았습니다.")
    assert error_of(events)["errorType"] == "TimeoutError" and terminal_cards(events) == []


async def test_a_failing_tool_gets_one_failed_card_and_an_explanation_with_its_error(parts: Harness) -> None:
    async def refuse(params: Mapping[str, Any], ctx: ToolContext) -> str:
        raise ToolError("fetch", "GET /api/tasks answered HTTP 503: busy")

    plan = tool_plan(tool_step("first"), tool_step("fetch", step_id="step-2"))
    session = parts.new_session("오늘 할 일 알려줘")
    await bounded(parts.runner(FixedPlanner(plan), [FakeTool("first", returning("fine")), FakeTool("fetch", refuse)],
                               workspace_events=True).run(session))

    events = parts.logged(session)
    assert kinds(events)[-8:] == ["plan_step_update", "tool_execution", "tool_execution", "action_execution",
                                  "plan_step_update", "state", "content", "error"]
    assert_workspace_events(events)
    assert [card["status"] for card in terminal_cards(events)] == ["completed", "failed"]
    assert explanation_of(events) == {
        "content": "fetch 실행에 실패하여 작업을 중단했습니다 (GET /api/tasks answered HTTP 503: busy).",
        "format": "markdown",
        "metadata": {"result": {"type": "checklist", "title": "도구 실행 결과", "content": [
            {"label": "Run first: fine", "checked": True},
            {"label": "Run fetch: 실패: GET /api/tasks answered HTTP 503: busy", "checked": False},
        ]}},
    }


async def test_a_cancel_while_a_tool_runs_closes_its_card_failed(parts: Harness) -> None:
    started = asyncio.Event()

    async def slow(params: Mapping[str, Any], ctx: ToolContext) -> str:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(tool_plan(tool_step("slow"))), [FakeTool("slow", slow)],
                                            workspace_events=True).run(session))
    await bounded(started.wait())
    session.cancel_requested = True
    task.cancel()
    await bounded(task)

    events = parts.logged(session)
    assert_workspace_events(events)
    assert terminal_cards(events) == [
        {"tool": "slow", "params": {}, "stepId": "step-1", "status": "failed", "error": "cancelled while running"}]
    assert explanation_of(events)["content"] == (
        "I stopped: the session was cancelled while slow was running. It may already have taken effect.")


async def test_a_planner_failure_is_explained_and_mirrors_its_one_thought(parts: Harness) -> None:
    session = parts.new_session()
    await bounded(parts.runner(FixedPlanner(PlannerError("no model")), workspace_events=True).run(session))
    events = parts.logged(session)
    assert kinds(events) == ["thought", "thought_chain", "state", "content", "error"]
    assert_workspace_events(events)


async def test_switched_off_there_is_no_thought_chain_and_no_action_execution(parts: Harness) -> None:
    session = parts.new_session()
    planner = FixedPlanner(tool_plan(tool_step("fetch")))
    await bounded(parts.runner(planner, [FakeTool("fetch", returning("x"))], workspace_events=False).run(session))
    assert not {"thought_chain", "action_execution"} & set(kinds(parts.logged(session)))


class BreakingPlanner(FixedPlanner):
    """Answers some chunks, then the model fails."""

    async def answer(self, prompt: str, plan: Any, outcomes: Any) -> AsyncIterator[str]:
        for chunk in self.chunks:
            yield chunk
        raise PlannerError("the model stopped answering")


async def test_an_answer_that_breaks_off_sends_all_it_said_then_the_explanation_as_its_own_paragraph(
    parts: Harness,
) -> None:
    """Regression: the piece held back for the result was lost when the answer broke off, and the
    explanation was glued to the text before it."""
    session = parts.new_session()
    planner = BreakingPlanner(tool_plan(tool_step("fetch")), chunks=("The first part. ", "The second part."))
    await bounded(parts.runner(planner, [FakeTool("fetch", returning("3 rows"))], workspace_events=True).run(session))

    events = parts.logged(session)
    texts = [data["content"] for kind, data in events if kind == "content"]
    assert texts == ["The first part. ", "The second part.",
                     "\n\nI could not finish: the language model failed (the model stopped answering). Please try again."]
    assert explanation_of(events)["metadata"]["result"] == {"type": "text", "title": "Run fetch", "content": "3 rows"}


async def test_a_rejection_after_a_tool_ran_lists_that_call_and_the_one_not_run(parts: Harness) -> None:
    parts.subscribe()
    send = FakeTool("send_email", returning("sent"), requires_approval=True)
    plan = tool_plan(tool_step("fetch"), tool_step("send_email", step_id="step-2"))
    session = parts.new_session(KOREAN_PROMPT)
    task = asyncio.create_task(parts.runner(FixedPlanner(plan), [FakeTool("fetch", returning("3 rows")), send],
                                            workspace_events=True).run(session))
    await until(lambda: bool(parts.approvals.requests))
    assert parts.deliver(session, parts.approval(session), Decision.REJECTED, KOREAN_REASON)
    await bounded(task)

    assert explanation_of(parts.logged(session))["metadata"]["result"] == {
        "type": "checklist", "title": "도구 실행 결과", "content": [
            {"label": "Run fetch: 3 rows", "checked": True},
            {"label": "Run send_email: 실행 안 됨: 승인 거부", "checked": False},
        ]}


async def test_a_cancel_while_waiting_for_approval_lists_the_call_not_run(parts: Harness) -> None:
    parts.subscribe()
    send = FakeTool("send_email", returning("sent"), requires_approval=True)
    plan = tool_plan(tool_step("fetch"), tool_step("send_email", step_id="step-2"))
    session = parts.new_session()
    task = asyncio.create_task(parts.runner(FixedPlanner(plan), [FakeTool("fetch", returning("3 rows")), send],
                                            workspace_events=True).run(session))
    await until(lambda: parts.hub.waiting == 1)
    session.cancel_requested = True
    task.cancel()
    await bounded(task)

    said = explanation_of(parts.logged(session))
    assert said["content"] == "I stopped: the session was cancelled."
    assert said["metadata"]["result"]["content"] == [
        {"label": "Run fetch: 3 rows", "checked": True},
        {"label": "Run send_email: not run: cancelled", "checked": False},
    ]


@pytest.mark.parametrize(
    ("answered", "sent"),
    [
        pytest.param(4, ["lt: 3 rows"], id="mid-answer: the resumed last piece carries the result"),
        pytest.param(len("Result: 3 rows"), [], id="all sent: nothing again, no Done."),
    ],
)
async def test_an_adopted_session_after_its_tools_ends_its_answer_once(
    parts: Harness, answered: int, sent: list[str]
) -> None:
    plan = tool_plan(tool_step("fetch"))
    session = parts.adopt(plan, seq=9, step=1, outcomes={"step-1": "3 rows"}, answered_chars=answered)
    planner = FixedPlanner(plan, chunks=("Result: 3 rows",))
    await bounded(parts.runner(planner, [FakeTool("fetch", returning("never"))], workspace_events=True).run(session))

    answers = [data for kind, data in parts.logged(session) if kind == "content"]
    assert [data["content"] for data in answers] == sent
    if sent:
        assert answers[-1]["metadata"] == {"result": {"type": "text", "title": "Run fetch", "content": "3 rows"}}


async def test_a_plan_too_long_for_one_frame_is_one_clipped_thought(parts: Harness) -> None:
    steps = [PlanStep(f"step-{n}", "t" * 90, "d") for n in range(30)]
    session = parts.new_session()
    await bounded(parts.runner(FixedPlanner(tool_plan(*steps)), workspace_events=True).run(session))
    events = parts.logged(session)
    assert_workspace_events(events)
    [plan_text] = [data["content"] for kind, data in events if kind == "thought_chain" and "Plan:" in data["content"]]
    assert len(plan_text) == 1000 and plan_text.endswith("...")
