"""A planner backed by an OpenAI-compatible model with tool calling.

One planning call: the model's reasoning becomes the `thought`, its tool calls
become the plan's steps (each goes through the same validation and approval
gate as any tool). After the steps ran, one answering call, without tools,
streams the answer; tool results go back to the model as ``tool`` messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from aura.errors import PlannerError
from aura.agent.llm import ChatClient, ChatTurn, ToolCall
from aura.session.plan import Plan, PlanStep, StepOutcome
from aura.agent.tools import ToolRegistry

SYSTEM_PROMPT: Final = (
    "You are Aura, the assistant of the DWP platform. Answer in the user's language. "
    "When a tool is needed, first say in one or two sentences what you will do, then call the tools. "
    "Tools that change data are approved by a human before they run."
)
MAX_CONTEXT_CHARS: Final = 4000
MIN_CHUNK_CHARS: Final = 48  # coalesce token deltas into a few-KB-at-most, not-too-chatty content events


class LlmPlanner:
    def __init__(self, client: ChatClient, tools: ToolRegistry) -> None:
        self._client = client
        self._tools = tools

    async def plan(self, prompt: str, context: Mapping[str, Any]) -> Plan:
        user = prompt
        if context:
            user += "\n\nPage context (JSON): " + json.dumps(context, ensure_ascii=False)[:MAX_CONTEXT_CHARS]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
        turn = ChatTurn()
        async for _ in self._client.stream(messages, tools=self._tools.openai_schemas(), turn=turn):
            pass
        if not turn.tool_calls:
            if not turn.content.strip():
                raise PlannerError("the model returned neither an answer nor a tool call")
            messages.append({"role": "assistant", "content": turn.content})
            thought = turn.reasoning.strip() or "No tool is needed; answering directly."
            return Plan(thought=thought, steps=[], conversation=messages)
        steps = [_step(number, call) for number, call in enumerate(turn.tool_calls, 1)]
        messages.append(
            {
                "role": "assistant",
                "content": turn.content or None,
                "tool_calls": [
                    {"id": step.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for step, call in zip(steps, turn.tool_calls, strict=True)
                ],
            }
        )
        thought = (turn.reasoning or turn.content).strip() or f"I will use {', '.join(s.title for s in steps)}."
        return Plan(thought=thought, steps=steps, conversation=messages)

    async def answer(self, prompt: str, plan: Plan, outcomes: Sequence[StepOutcome]) -> AsyncIterator[str]:
        last = plan.conversation[-1] if plan.conversation else {}
        if "tool_calls" not in last:  # the planning call already answered
            text = str(last.get("content") or "")
            for start in range(0, len(text), 400):
                yield text[start : start + 400]
            return
        results = {o.step.call_id: o.result for o in outcomes}
        for step in plan.steps:
            result = results.get(step.call_id)
            plan.conversation.append(
                {"role": "tool", "tool_call_id": step.call_id, "content": result if result is not None else "(no result)"}
            )
        turn = ChatTurn()
        buffer = ""
        async for delta in self._client.stream(plan.conversation, turn=turn):
            if delta.content:
                buffer += delta.content
                if len(buffer) >= MIN_CHUNK_CHARS:
                    yield buffer
                    buffer = ""
        if buffer:
            yield buffer
        if not turn.content.strip():
            raise PlannerError("the model returned an empty answer")
        plan.conversation.append({"role": "assistant", "content": turn.content})


def _step(number: int, call: ToolCall) -> PlanStep:
    call_id = call.id or f"call_{number}"
    params: dict[str, Any] = {}
    invalid = None
    if not call.name:
        invalid = "the model called a tool without a name"
    try:
        parsed = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        invalid = invalid or f"the model sent arguments that are not JSON: {call.arguments[:200]!r}"
    else:
        if isinstance(parsed, dict):
            params = parsed
        else:
            invalid = invalid or "the model sent arguments that are not a JSON object"
    title = call.name or "unnamed tool"
    return PlanStep(
        id=f"step-{number}",
        title=title,
        description=f"Call {title}",
        tool=call.name or "",
        params=params,
        confidence=0.7,
        call_id=call_id,
        invalid=invalid,
    )
