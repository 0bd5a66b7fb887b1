"""The deterministic planner."""

from __future__ import annotations

import pytest

from aura.agent.planner import RuleBasedPlanner
from aura.session.plan import StepOutcome

pytestmark = pytest.mark.anyio


async def test_english_email_request_plans_send_email() -> None:
    plan = await RuleBasedPlanner().plan("Send an email to kim@example.com saying the release is ready", {})
    tools = [s for s in plan.steps if s.tool]
    assert [s.tool for s in tools] == ["send_email"]
    assert tools[0].params == {"to": "kim@example.com", "subject": "the release is ready", "body": "the release is ready"}


async def test_korean_email_request_plans_send_email() -> None:
    plan = await RuleBasedPlanner().plan("이메일을 kim@example.com 에게 보내 주세요", {})
    step = next(s for s in plan.steps if s.tool)
    assert step.tool == "send_email" and step.params["to"] == "kim@example.com"
    assert step.params["body"] == "이메일을 kim@example.com 에게 보내 주세요"


async def test_several_recipients_are_deduplicated() -> None:
    plan = await RuleBasedPlanner().plan("email a@x.io, b@y.io and a@x.io: hi", {})
    assert next(s for s in plan.steps if s.tool).params["to"] == "a@x.io, b@y.io"


async def test_email_without_address_asks_instead_of_sending() -> None:
    planner = RuleBasedPlanner()
    plan = await planner.plan("send an email to my boss", {})
    assert all(s.tool is None for s in plan.steps)
    text = "".join([c async for c in planner.answer("send an email to my boss", plan, [])])
    assert "email address" in text


async def test_task_summary_plans_no_approval() -> None:
    plan = await RuleBasedPlanner().plan("Summarize today's open tasks", {})
    assert [s.tool for s in plan.steps] == ["list_open_tasks", None]


async def test_answer_reports_tool_results() -> None:
    planner = RuleBasedPlanner()
    plan = await planner.plan("Summarize today's open tasks", {})
    outcomes = [StepOutcome(plan.steps[0], "2 open tasks: a; b"), StepOutcome(plan.steps[1], None)]
    chunks = [c async for c in planner.answer("x", plan, outcomes)]
    assert chunks == ["Read open tasks: 2 open tasks: a; b"]
