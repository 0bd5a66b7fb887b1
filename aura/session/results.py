"""A session's result, for the last `content` event's ``metadata.result`` (CONTRACT §3.5).

Built only from what the tools returned, in plan order:
- one call that completed: ``text`` (or ``preview`` when it returned a JSON object or
  array, which the page pretty-prints);
- several calls, or one that failed: a ``checklist``, one item per call, checked when it
  completed; on an ending without an answer, the call the session stopped at is an unchecked
  item too (not run: rejected, no approval in time, cancelled).
No result when no tool ran. The whole of it stays within about :data:`RESULT_CHARS`, as much as
the piece of text it rides with, so the frame that carries it is no larger than a
`tool_execution` with a clipped result (CONTRACT §3.6 point 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aura.session.events import fit
from aura.session.language import Language
from aura.session.plan import PlanStep

RESULT_CHARS: Final = 1000
MAX_ITEMS: Final = 20
MIN_LABEL_CHARS: Final = 40
TITLE_CHARS: Final = 100  # a step's title comes from the planner (the model): bounded here

CHECKLIST_TITLE: Final = {Language.ENGLISH: "Tool results", Language.KOREAN: "도구 실행 결과"}
FAILED: Final = {Language.ENGLISH: "failed", Language.KOREAN: "실패"}
NOT_RUN: Final = {Language.ENGLISH: "not run", Language.KOREAN: "실행 안 됨"}
MORE: Final = {Language.ENGLISH: "and {count} more", Language.KOREAN: "외 {count}건"}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call: what it returned, or why it failed or was not run (``ran`` false)."""

    step: PlanStep
    output: str
    completed: bool
    ran: bool = True


def tool_calls(steps: Sequence[PlanStep], outcomes: Mapping[str, str | None],
               failed: ToolCall | None = None) -> list[ToolCall]:
    """The calls that ran, in plan order: the completed ones from ``outcomes``, then ``failed``."""
    calls = [ToolCall(step, outcomes.get(step.id) or "", True)
             for step in steps if step.tool is not None and step.id in outcomes]
    if failed is not None:
        calls.append(failed)
    return calls


def _json_value(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) and value else None


def result(calls: Sequence[ToolCall], language: Language) -> dict[str, Any] | None:
    """The ``metadata.result`` object, or None when no tool ran."""
    if not any(call.ran for call in calls):
        return None
    if len(calls) == 1 and calls[0].completed:
        call = calls[0]
        title = fit(call.step.title, TITLE_CHARS)
        if len(call.output) <= RESULT_CHARS and (value := _json_value(call.output)) is not None:
            return {"type": "preview", "title": title, "content": value}
        return {"type": "text", "title": title, "content": fit(call.output, RESULT_CHARS)}
    shown = calls[:MAX_ITEMS]
    label_chars = max(MIN_LABEL_CHARS, RESULT_CHARS // len(shown))
    items: list[dict[str, Any]] = []
    for call in shown:
        if call.completed:
            output = call.output
        else:
            output = f"{(FAILED if call.ran else NOT_RUN)[language]}: {call.output}"
        title = fit(call.step.title, TITLE_CHARS)
        label = f"{title}: {' '.join(output.split())}" if output else title
        items.append({"label": fit(label, label_chars), "checked": call.completed})
    if len(calls) > len(shown):
        items.append({"label": MORE[language].format(count=len(calls) - len(shown)), "checked": False})
    return {"type": "checklist", "title": CHECKLIST_TITLE[language], "content": items}
