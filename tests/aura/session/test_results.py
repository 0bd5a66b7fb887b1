"""The last `content` event's ``metadata.result`` (CONTRACT §3.5), built from what the tools returned."""

from __future__ import annotations

import json

from aura.session.language import Language
from aura.session.plan import PlanStep
from aura.session.results import MAX_ITEMS, RESULT_CHARS, ToolCall, result, tool_calls

FETCH = PlanStep("step-1", "Read open tasks", "Read", "list_open_tasks")
ANSWER = PlanStep("step-2", "Summarize", "Summarize")  # no tool
SEND = PlanStep("step-3", "Send the email", "Send", "send_email")


def test_no_tool_that_ran_means_no_result() -> None:
    assert result(tool_calls([FETCH, ANSWER], {"step-2": None}), Language.ENGLISH) is None
    assert result([], Language.KOREAN) is None


def test_one_completed_call_is_text_titled_by_its_step() -> None:
    calls = tool_calls([FETCH, ANSWER], {"step-1": "2 open tasks: a; b", "step-2": None})
    assert result(calls, Language.ENGLISH) == {"type": "text", "title": "Read open tasks", "content": "2 open tasks: a; b"}


def test_one_call_that_returned_json_is_a_preview_of_the_value() -> None:
    value = {"data": [{"id": 1, "title": "검토"}], "success": True}
    calls = tool_calls([FETCH], {"step-1": json.dumps(value, ensure_ascii=False)})
    assert result(calls, Language.ENGLISH) == {"type": "preview", "title": "Read open tasks", "content": value}


def test_json_too_long_to_keep_whole_is_clipped_text_never_a_broken_preview() -> None:
    output = json.dumps({"rows": ["x" * 50] * 40})
    [call] = tool_calls([FETCH], {"step-1": output})
    shown = result([call], Language.ENGLISH)
    assert shown == {"type": "text", "title": "Read open tasks", "content": output[: RESULT_CHARS - 3] + "..."}


def test_several_calls_are_a_checklist_in_plan_order_with_the_failed_one_unchecked() -> None:
    calls = tool_calls([FETCH, ANSWER, SEND], {"step-1": "no open tasks\nfor today", "step-2": None},
                       failed=ToolCall(SEND, "POST /mail answered HTTP 503", completed=False))
    assert result(calls, Language.KOREAN) == {
        "type": "checklist",
        "title": "도구 실행 결과",
        "content": [
            {"label": "Read open tasks: no open tasks for today", "checked": True},
            {"label": "Send the email: 실패: POST /mail answered HTTP 503", "checked": False},
        ],
    }


def test_one_failed_call_is_a_checklist_of_one_unchecked_item() -> None:
    calls = tool_calls([SEND], {}, failed=ToolCall(SEND, "timed out after 30 s", completed=False))
    assert result(calls, Language.ENGLISH) == {
        "type": "checklist", "title": "Tool results",
        "content": [{"label": "Send the email: failed: timed out after 30 s", "checked": False}],
    }


def test_a_long_checklist_stays_within_the_budget_and_says_how_many_it_left_out() -> None:
    steps = [PlanStep(f"step-{n}", f"Call {n}", "", "fetch") for n in range(MAX_ITEMS + 5)]
    calls = tool_calls(steps, {step.id: "y" * 500 for step in steps})
    shown = result(calls, Language.ENGLISH)
    assert shown is not None and shown["type"] == "checklist"
    items = shown["content"]
    assert len(items) == MAX_ITEMS + 1 and items[-1] == {"label": "and 5 more", "checked": False}
    assert sum(len(item["label"]) for item in items) <= RESULT_CHARS + len("and 5 more")
    assert all(item["checked"] for item in items[:-1])


def test_a_call_that_was_not_run_is_no_result_alone_and_an_unchecked_item_beside_others() -> None:
    not_run = ToolCall(SEND, "rejected", completed=False, ran=False)
    assert result(tool_calls([SEND], {}, failed=not_run), Language.ENGLISH) is None
    calls = tool_calls([FETCH, SEND], {"step-1": "ok"}, failed=not_run)
    assert result(calls, Language.ENGLISH) == {"type": "checklist", "title": "Tool results", "content": [
        {"label": "Read open tasks: ok", "checked": True}, {"label": "Send the email: not run: rejected", "checked": False}]}


def test_a_models_long_step_title_is_clipped() -> None:
    step = PlanStep("step-1", "T" * 500, "", "fetch")
    shown = result(tool_calls([step], {"step-1": "ok"}), Language.ENGLISH)
    assert shown is not None and shown["title"] == "T" * 97 + "..."
