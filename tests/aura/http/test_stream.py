"""The stream end to end against a real uvicorn and a real redis-server (CONTRACT §3)."""

from __future__ import annotations

import pytest

from tests.conftest import auth_headers, open_stream
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.anyio

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"


async def test_contract_3_2_response_headers_are_exact(client):
    async with open_stream(client, "Summarize today's open tasks") as stream:
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["connection"] == "keep-alive"
        assert headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in headers
        await stream.rest()


async def test_happy_path_event_order_and_shapes(client):
    async with open_stream(client, "Summarize today's open tasks") as stream:
        frames = await stream.rest()
    types = [f.type if not f.is_done else "[DONE]" for f in frames]
    assert types == [
        "thought", "thought", "plan_step", "plan_step", "state",
        "plan_step_update", "tool_execution", "tool_execution", "plan_step_update",
        "plan_step_update", "plan_step_update", "content", "state", "[DONE]",
    ]
    session_id = frames[0].id.split(".")[0]
    assert [f.id for f in frames[:-1]] == [f"{session_id}.{n}" for n in range(1, len(frames))]
    assert frames[0].body["thoughtType"] == "analysis" and frames[0].body["content"]
    step = frames[2].body
    assert step == {"id": "step-1", "title": "Read open tasks", "description": step["description"], "order": 0,
                    "status": "pending", "confidence": 0.9, "canSkip": False, "tool": "list_open_tasks"}
    assert frames[3].body["order"] == 1
    assert frames[4].body == {"sessionId": session_id, "from": "planning", "to": "executing",
                              "trigger": "start_execution"}
    executing, completed = frames[6].body, frames[7].body
    assert executing["status"] == "executing" and executing["tool"] == "list_open_tasks"
    assert completed["status"] == "completed" and completed["params"] == executing["params"]
    assert completed["result"] == "no open tasks for today"
    assert frames[11].body["content"] == "Read open tasks: no open tasks for today"
    assert frames[12].body["to"] == "done"
    assert frames[-1].raw == b"data: [DONE]"


async def test_tool_results_are_real_tasks_from_redis(client, redis):
    tenant = "41"
    await redis.delete(f"aura:tasks:{tenant}")
    await redis.hset(f"aura:tasks:{tenant}", mapping={
        "t1": '{"title":"Review PR 12","status":"open","due":"2000-01-01"}',
        "t2": '{"title":"Ship release","status":"open"}',
        "t3": '{"title":"Old thing","status":"done"}',
        "t4": '{"title":"Next year","status":"open","due":"2999-01-01"}',
    })
    async with open_stream(client, "Summarize today's open tasks", headers=auth_headers(tenant=tenant)) as stream:
        done = [f for f in await stream.rest() if f.type == "tool_execution" and f.body["status"] == "completed"]
    assert done[0].body["result"] == "2 open tasks: Review PR 12 (overdue); Ship release"


async def test_legacy_get_with_message_query_runs_a_session(client):
    async with open_stream(client, method="GET", params={"message": "hello"}) as stream:
        frames = await stream.rest()
    assert frames[-1].is_done
    assert any(f.type == "content" for f in frames)


async def test_unknown_last_event_id_starts_a_fresh_run(client):
    for unknown in ("event_123", "12345", "1706156400123", "sess_000000000000000000000000.3"):
        headers = {**auth_headers(), "Last-Event-ID": unknown}
        async with open_stream(client, "hello", headers=headers) as stream:
            frames = await stream.rest()
        assert frames[0].type == "thought" and frames[0].id.endswith(".1")
        assert frames[-1].is_done


async def test_last_event_id_of_own_session_replays_exactly_the_rest(client):
    async with open_stream(client, "Summarize today's open tasks") as stream:
        first = await stream.rest()
    cut = first[5]
    headers = {**auth_headers(), "Last-Event-ID": cut.id}
    async with open_stream(client, "Summarize today's open tasks", headers=headers) as stream:
        replay = await stream.rest()
    assert [f.raw for f in replay] == [f.raw for f in first[6:]]


async def test_last_event_id_of_another_users_session_is_unknown(client):
    async with open_stream(client, "Summarize today's open tasks") as stream:
        first = await stream.rest()
    headers = {**auth_headers(sub="2"), "Last-Event-ID": first[3].id}
    async with open_stream(client, "hello", headers=headers) as stream:
        other = await stream.rest()
    assert other[0].id.split(".")[0] != first[0].id.split(".")[0]
    assert other[0].id.endswith(".1")


async def test_korean_prompt_is_escaped_to_ascii_frames(client):
    async with open_stream(client, "이메일을 kim@example.com 에게 보내 주세요") as stream:
        hitl = await stream.until("hitl")
    # parse_frame already decoded the frame as ASCII; the Korean survives the round trip.
    assert hitl.body["params"]["body"] == "이메일을 kim@example.com 에게 보내 주세요"
    assert hitl.body["actionType"] == "send_email"


async def test_heartbeat_comments_while_waiting_for_approval(start_server):
    server: LiveServer = start_server(heartbeat_seconds=0.2, hitl_timeout_seconds=1.5)
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        async with open_stream(c, EMAIL_PROMPT) as stream:
            await stream.until("hitl")
            comments = []
            while len(comments) < 3:
                frame = await stream.next_frame()
                if frame.comment is not None:
                    comments.append(frame)
            await stream.rest()
    # The heartbeat carries "id:" so the gateway does not inject an id (CONTRACT §3.6 point 4).
    assert all(f.raw == b": keepalive id:-" for f in comments)


async def test_client_disconnect_does_not_cancel_the_run(client, aura):
    async with open_stream(client, "Summarize today's open tasks") as stream:
        first = await stream.next_frame()
    session_id = first.id.split(".")[0]
    # Reconnect from the very first id: the run went on without a reader.
    headers = {**auth_headers(), "Last-Event-ID": first.id}
    async with open_stream(client, "ignored", headers=headers) as stream:
        rest = await stream.rest()
    assert rest[-2].body["to"] == "done"
    assert all(f.id.startswith(session_id) for f in rest[:-1])


async def test_last_event_id_beyond_what_was_issued_is_unknown(client):
    """An id Aura never issued (seq past the log) must not hang the client waiting (CONTRACT §3.6)."""
    async with open_stream(client, "Summarize today's open tasks") as stream:
        first = await stream.rest()
    session_id = first[0].id.split(".")[0]
    headers = {**auth_headers(), "Last-Event-ID": f"{session_id}.999"}
    async with open_stream(client, "hello", headers=headers) as stream:
        fresh = await stream.rest()
    assert not fresh[0].id.startswith(session_id) and fresh[0].id.endswith(".1")
