"""Sessions planned by a (respx-mocked) OpenAI-compatible model, through a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from redis.asyncio import Redis

from tests.conftest import auth_headers, open_stream
from tests.support import main_service
from tests.support.delegated_tokens import delegated_claims
from tests.support.live_server import LiveServer
from tests.support.llm import GATEWAY, LLM, text_stream, tool_call_stream
from tests.support.sse import Frame

pytestmark = pytest.mark.anyio

MAIL_TOOL = {
    "name": "send_dwp_mail",
    "description": "Send a mail through DWP mail-service.",
    "requires_approval": True,
    "parameters": {
        "type": "object",
        "properties": {"to": {"type": "string", "format": "email"}, "subject": {"type": "string", "minLength": 1}},
        "required": ["to", "subject"],
        "additionalProperties": False,
    },
    "http": {"method": "POST", "url": "{gateway}/api/mail/send", "body": {"to": "{to}", "subject": "{subject}", "tenant": "{tenant_id}"}},
}


@pytest.fixture
def llm_server(start_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [MAIL_TOOL]}))
    return start_server(
        llm_base_url="https://llm.test/v1", llm_model="test-model", llm_api_key="sk-test", llm_max_retries=2,
        llm_timeout_seconds=5, dwp_gateway_url=GATEWAY, tools_file=str(tools),
    )


async def run_session(
    server: LiveServer,
    prompt: str,
    headers: dict[str, str] | None = None,
    approve: Callable[[Frame], Awaitable[None]] | None = None,
) -> list[Frame]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, prompt, headers=headers) as stream:
            if approve is not None:
                hitl = await stream.until("hitl")
                await approve(hitl)
            await stream.rest()
            return [f for f in stream.frames if f.comment is None]


def of_type(frames: list[Frame], type_: str) -> list[Frame]:
    return [f for f in frames if f.type == type_]


def final_state(frames: list[Frame]) -> dict[str, Any]:
    assert frames[-1].is_done
    return of_type(frames, "state")[-1].body


async def test_streamed_llm_answer_becomes_small_content_events(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    answer = ["Aura ", "here. ", "x" * 60, " and ", "the end."]
    mocked.post(LLM).mock(return_value=text_stream(*answer, reasoning="The user greets me."))
    frames = await run_session(llm_server, "hello there")
    contents = of_type(frames, "content")
    assert "".join(f.body["content"] for f in contents) == "".join(answer)
    assert of_type(frames, "thought")[1].body["content"] == "The user greets me."
    assert frames[-2].body["to"] == "done" and frames[-1].is_done
    body = json.loads(mocked.calls.last.request.content)
    assert body["model"] == "test-model" and body["stream"] is True
    assert {t["function"]["name"] for t in body["tools"]} >= {"send_email", "send_dwp_mail", "list_agent_tasks"}


async def test_llm_tool_call_is_approved_then_calls_dwp_with_propagated_headers(
    mocked: respx.MockRouter, llm_server: LiveServer, redis: Redis
) -> None:
    llm = mocked.post(LLM).mock(side_effect=[
        tool_call_stream("send_dwp_mail", '{"to":"kim@example.com","subject":"Release"}', say="I will send the mail."),
        text_stream("Mail sent."),
    ])
    dwp = mocked.post(f"{GATEWAY}/api/mail/send").mock(return_value=httpx.Response(200, json={"status": "SUCCESS", "data": {"mailId": 7}}))
    headers = auth_headers(sub="5", tenant="1", **{"X-Agent-ID": "agent_session_1_abc", "X-User-ID": "5"})

    async def approve(hitl: Frame) -> None:
        assert not dwp.called  # nothing runs before the human said yes
        await main_service.decide(redis, hitl.body["requestId"], approve=True, user_id="5")

    frames = await run_session(llm_server, "Mail kim about the release", headers=headers, approve=approve)
    assert of_type(frames, "thought")[1].body["content"] == "I will send the mail."
    assert of_type(frames, "plan_step")[0].body["title"] == "send_dwp_mail"
    request = dwp.calls.last.request
    # Not the caller's token: one minted for this call from its claims (issue 10 item 8).
    assert request.headers["authorization"] != headers["Authorization"]
    assert delegated_claims(request.headers["authorization"])["sub"] == "5"
    assert request.headers["x-tenant-id"] == "1" and request.headers["x-user-id"] == "5"
    assert request.headers["x-agent-id"] == "agent_session_1_abc"
    assert request.headers["x-dwp-source"] == "AURA" and request.headers["x-dwp-caller-type"] == "AGENT"
    assert json.loads(request.content) == {"to": "kim@example.com", "subject": "Release", "tenant": "1"}
    done = [f for f in of_type(frames, "tool_execution") if f.body["status"] == "completed"]
    assert json.loads(done[0].body["result"]) == {"status": "SUCCESS", "data": {"mailId": 7}}
    # The tool result went back to the model, with the call id it gave.
    second = json.loads(llm.calls[1].request.content)
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": done[0].body["result"]}
    assert "tools" not in second
    assert "".join(f.body["content"] for f in of_type(frames, "content")) == "Mail sent."
    assert frames[-2].body["to"] == "done"


async def test_transient_llm_errors_are_retried(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    route = mocked.post(LLM).mock(side_effect=[httpx.Response(503), httpx.Response(429), text_stream("fine")])
    frames = await run_session(llm_server, "hello")
    assert route.call_count == 3 and frames[-2].body["to"] == "done"


async def test_llm_timeout_aborts_with_a_clear_error(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    mocked.post(LLM).mock(side_effect=httpx.ReadTimeout("slow"))
    frames = await run_session(llm_server, "hello")
    error = of_type(frames, "error")[0].body
    assert error["errorType"] == "PlannerError" and "did not answer within 5 s" in error["message"]
    assert final_state(frames)["to"] == "aborted" and final_state(frames)["reason"] == "failed"
    assert [f.type for f in frames[-4:-1]] == ["state", "content", "error"]
    assert frames[-3].body["content"].startswith("I could not finish: the language model failed (")


async def test_dwp_500_is_a_failed_tool_execution_with_the_real_body(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    mocked.post(LLM).mock(return_value=tool_call_stream("list_agent_tasks", "{}"))
    mocked.get(url__startswith=f"{GATEWAY}/api/main/agent/tasks").mock(
        return_value=httpx.Response(500, json={"status": "ERROR", "errorCode": "E1000"})
    )
    frames = await run_session(llm_server, "show my tasks")
    failed = of_type(frames, "tool_execution")[-1].body
    assert failed["status"] == "failed"
    assert failed["error"] == 'GET http://gateway.test/api/main/agent/tasks answered HTTP 500: {"status":"ERROR","errorCode":"E1000"}'
    assert of_type(frames, "error")[0].body["errorType"] == "ToolError"
    assert final_state(frames)["reason"] == "failed"


@pytest.mark.parametrize("task_id", ["..", ".", "../../auth/users/1"])
async def test_a_model_chosen_path_value_cannot_reach_another_endpoint(
    mocked: respx.MockRouter, llm_server: LiveServer, task_id: str
) -> None:
    """Issue 10 item 15: get_agent_task {"taskId": ".."} reached GET /api/main/agent with the user's token."""
    mocked.post(LLM).mock(return_value=tool_call_stream("get_agent_task", json.dumps({"taskId": task_id})))
    gateway = mocked.route(host="gateway.test").mock(return_value=httpx.Response(200, json={"status": "SUCCESS"}))
    frames = await run_session(llm_server, "show that task")
    assert not gateway.called  # no request at all, so no token went anywhere
    failed = of_type(frames, "tool_execution")[-1].body
    assert failed["status"] == "failed" and failed["error"].startswith("get_agent_task: taskId must not ")
    assert of_type(frames, "error")[0].body["errorType"] == "ToolError"
    assert final_state(frames)["reason"] == "failed"


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("send_dwp_mail", '{"to": "kim@example.com", "subj', "arguments that are not JSON"),
        ("send_dwp_mail", '["kim@example.com"]', "not a JSON object"),
        ("send_dwp_mail", '{"to": "kim@example.com"}', "'subject' is a required property"),
        ("drop_database", "{}", "unknown tool: drop_database"),
    ],
)
async def test_malformed_tool_calls_fail_cleanly_before_any_approval(
    mocked: respx.MockRouter, llm_server: LiveServer, name: str, arguments: str, error: str
) -> None:
    mocked.post(LLM).mock(return_value=tool_call_stream(name, arguments))
    frames = await run_session(llm_server, "do it")
    assert not of_type(frames, "hitl")
    failed = of_type(frames, "tool_execution")
    assert len(failed) == 1 and failed[0].body["status"] == "failed" and error in failed[0].body["error"]
    assert final_state(frames)["to"] == "aborted"


async def test_garbage_model_output_aborts_the_session_not_the_server(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    mocked.post(LLM).mock(return_value=httpx.Response(200, content=b"data: <html>oops</html>\n\n"))
    frames = await run_session(llm_server, "hello")
    assert of_type(frames, "error")[0].body["errorType"] == "PlannerError"
    mocked.post(LLM).mock(return_value=text_stream("back"))
    frames = await run_session(llm_server, "hello again")
    assert frames[-2].body["to"] == "done"


async def test_agent_task_is_created_started_progressed_and_completed(
    mocked: respx.MockRouter, start_server: Callable[..., LiveServer]
) -> None:
    base = f"{GATEWAY}/api/main/agent/tasks"
    create = mocked.post(base).mock(return_value=httpx.Response(201, json={"status": "SUCCESS", "data": {"taskId": "task-9"}}))
    start = mocked.post(f"{base}/task-9/start").mock(return_value=httpx.Response(200, json={}))
    progress = mocked.patch(f"{base}/task-9/progress").mock(return_value=httpx.Response(200, json={}))
    complete = mocked.post(f"{base}/task-9/complete").mock(return_value=httpx.Response(200, json={}))
    server = start_server(agent_task_url=base)
    frames = await run_session(server, "Summarize today's open tasks")
    assert frames[-2].body["to"] == "done"
    for _ in range(100):  # the reporter follows the feed in its own task
        if complete.called:
            break
        await asyncio.sleep(0.02)
    created = json.loads(create.calls.last.request.content)
    assert created["taskType"] == "AURA_SESSION" and created["userId"] == "1" and created["tenantId"] == "1"
    assert create.calls.last.request.headers["x-dwp-source"] == "AURA"
    assert start.called and progress.call_count == 2
    assert [json.loads(c.request.content)["progress"] for c in progress.calls] == [50, 99]
    assert complete.calls.last.request.content.decode() == "".join(f.body["content"] for f in of_type(frames, "content"))


async def test_long_reasoning_and_answers_are_split_into_small_frames(mocked: respx.MockRouter, llm_server: LiveServer) -> None:
    """CONTRACT §3.6 point 2: a big event could be split by the network and corrupted by the gateway."""
    mocked.post(LLM).mock(return_value=text_stream("y" * 2500, reasoning="r" * 2500))
    frames = await run_session(llm_server, "hello")
    thoughts = [f for f in of_type(frames, "thought") if f.body["thoughtType"] == "planning"]
    assert [len(f.body["content"]) for f in thoughts] == [1000, 1000, 500]
    assert all(len(f.raw) < 2048 for f in frames)
    assert "".join(f.body["content"] for f in of_type(frames, "content")) == "y" * 2500
