"""The stream end to end against a real uvicorn and a real redis-server (CONTRACT §3)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import open_stream
from tests.support.auth import auth_headers
from tests.support.live_server import LiveServer
from tests.support.raw_http import RawResponse, raw_post
from tests.support.sse import Frame, parse_frame

pytestmark = pytest.mark.anyio

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"
TASKS_PROMPT = "Summarize today's open tasks"


async def test_contract_3_2_response_headers_are_exact(client: httpx.AsyncClient) -> None:
    async with open_stream(client, TASKS_PROMPT) as stream:
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["connection"] == "keep-alive"
        assert headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in headers
        await stream.rest()


async def test_happy_path_event_order_and_shapes(client: httpx.AsyncClient) -> None:
    async with open_stream(client, TASKS_PROMPT) as stream:
        frames = await stream.rest()
    types = [f.type if not f.is_done else "[DONE]" for f in frames]
    # The documented events, each `thought` followed by its `thought_chain` and the call's end by its
    # `action_execution`, for the AI-workspace page (docs/EVENTS.md; AURA_WORKSPACE_EVENTS).
    assert types == [
        "thought", "thought_chain", "thought", "thought_chain", "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "plan_step_update", "plan_step_update", "content", "state", "[DONE]",
    ]
    session_id = frames[0].session_id
    assert [f.id for f in frames[:-1]] == [f"{session_id}.{n}" for n in range(1, len(frames))]
    assert frames[0].body["thoughtType"] == "analysis" and frames[0].body["content"]
    assert frames[1].body == {"type": "analysis", "content": frames[0].body["content"],
                              "timestamp": frames[1].body["timestamp"]}
    step = frames[4].body
    assert step == {"id": "step-1", "title": "Read open tasks", "description": step["description"], "order": 0,
                    "status": "pending", "confidence": 0.9, "canSkip": False, "tool": "list_open_tasks"}
    assert frames[5].body["order"] == 1
    assert frames[6].body["content"] == "Plan:\n1. Read open tasks\n2. Summarize"
    assert frames[7].body == {"sessionId": session_id, "from": "planning", "to": "executing",
                              "trigger": "start_execution"}
    executing, completed, card = frames[9].body, frames[10].body, frames[11].body
    assert executing["status"] == "executing" and executing["tool"] == "list_open_tasks"
    assert completed["status"] == "completed" and completed["params"] == executing["params"]
    assert completed["result"] == "no open tasks for today"
    assert card == completed
    assert frames[15].body == {
        "content": "Read open tasks: no open tasks for today", "format": "markdown",
        "metadata": {"result": {"type": "text", "title": "Read open tasks", "content": "no open tasks for today"}},
    }
    assert frames[16].body["to"] == "done"
    assert frames[-1].raw == b"data: [DONE]"


async def test_tool_results_are_real_tasks_from_redis(client: httpx.AsyncClient, redis: Redis) -> None:
    tenant = "41"
    await redis.delete(f"aura:tasks:{tenant}")
    await redis.hset(f"aura:tasks:{tenant}", mapping={
        "t1": '{"title":"Review PR 12","status":"open","due":"2000-01-01"}',
        "t2": '{"title":"Ship release","status":"open"}',
        "t3": '{"title":"Old thing","status":"done"}',
        "t4": '{"title":"Next year","status":"open","due":"2999-01-01"}',
    })
    async with open_stream(client, TASKS_PROMPT, headers=auth_headers(tenant=tenant)) as stream:
        done = [f for f in await stream.rest() if f.type == "tool_execution" and f.body["status"] == "completed"]
    assert done[0].body["result"] == "2 open tasks: Review PR 12 (overdue); Ship release"


async def test_legacy_get_with_message_query_runs_a_session(client: httpx.AsyncClient) -> None:
    async with open_stream(client, method="GET", params={"message": "hello"}) as stream:
        frames = await stream.rest()
    assert frames[-1].is_done
    assert any(f.type == "content" for f in frames)


async def test_unknown_last_event_id_starts_a_fresh_run(client: httpx.AsyncClient) -> None:
    for unknown in ("event_123", "12345", "1706156400123", "sess_000000000000000000000000.3"):
        headers = {**auth_headers(), "Last-Event-ID": unknown}
        async with open_stream(client, "hello", headers=headers) as stream:
            frames = await stream.rest()
        assert frames[0].type == "thought" and frames[0].seq == 1
        assert frames[-1].is_done


async def test_last_event_id_of_own_session_replays_exactly_the_rest(client: httpx.AsyncClient) -> None:
    async with open_stream(client, TASKS_PROMPT) as stream:
        first = await stream.rest()
    cut = first[5]
    headers = {**auth_headers(), "Last-Event-ID": cut.event_id}
    async with open_stream(client, TASKS_PROMPT, headers=headers) as stream:
        replay = await stream.rest()
    assert [f.raw for f in replay] == [f.raw for f in first[6:]]


async def test_last_event_id_of_another_users_session_is_unknown(client: httpx.AsyncClient) -> None:
    async with open_stream(client, TASKS_PROMPT) as stream:
        first = await stream.rest()
    headers = {**auth_headers(sub="2"), "Last-Event-ID": first[3].event_id}
    async with open_stream(client, "hello", headers=headers) as stream:
        other = await stream.rest()
    assert other[0].session_id != first[0].session_id
    assert other[0].seq == 1


async def test_korean_prompt_is_escaped_to_ascii_frames(client: httpx.AsyncClient) -> None:
    async with open_stream(client, "이메일을 kim@example.com 에게 보내 주세요") as stream:
        hitl = await stream.until("hitl")
    # parse_frame already decoded the frame as ASCII; the Korean survives the round trip.
    assert hitl.body["params"]["body"] == "이메일을 kim@example.com 에게 보내 주세요"
    assert hitl.body["actionType"] == "send_email"


async def test_heartbeat_comments_while_waiting_for_approval(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(heartbeat_seconds=0.2, hitl_timeout_seconds=1.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        async with open_stream(c, EMAIL_PROMPT) as stream:
            await stream.until("hitl")
            comments: list[Frame] = []
            while len(comments) < 3:
                frame = await stream.next_frame()
                if frame.comment is not None:
                    comments.append(frame)
            await stream.rest()
    # The heartbeat carries "id:" so the gateway does not inject an id (CONTRACT §3.6 point 4).
    assert all(f.raw == b": keepalive id:-" for f in comments)


async def test_contract_3_7_heartbeats_come_every_heartbeat_seconds(start_server: Callable[..., LiveServer]) -> None:
    """While a session waits for approval, one heartbeat per ``heartbeat_seconds``: the median gap
    is within half an interval of it (a doubled interval, or heartbeats in a burst, fail)."""
    interval = 0.2
    server = start_server(heartbeat_seconds=interval)
    arrivals: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        async with open_stream(c, "Send an email to kim@example.com saying hi") as stream:
            await stream.until("hitl")
            started = time.monotonic()
            with anyio.fail_after(15):
                while time.monotonic() - started < 2.0:
                    frame = await stream.next_frame()
                    if frame.data is None:
                        assert frame.raw == b": keepalive id:-"
                        arrivals.append(time.monotonic())
                    else:
                        assert frame.type == "hitl_request", frame.raw  # nobody decides: nothing else
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(gaps) >= 3, arrivals
    median = statistics.median(gaps)
    assert 0.5 * interval < median < 1.5 * interval, gaps


# -- CONTRACT §3.3: one write per event ----------------------------------------------------------


def frames_of_chunks(chunks: list[bytes]) -> list[Frame]:
    """CONTRACT §3.3: each chunk on the wire holds exactly one whole frame (one write per event)."""
    frames: list[Frame] = []
    for chunk in chunks:
        count = chunk.count(b"\n\n")
        assert chunk.endswith(b"\n\n") and count == 1, f"{count} frames in one write: {chunk[:300]!r}..."
        frames.append(parse_frame(chunk[:-2]))
    return frames


async def sse_chunks(response: RawResponse) -> list[bytes]:
    assert response.status == 200, response.headers
    assert response.headers["content-type"] == "text/event-stream"
    assert response.chunked, response.headers
    return await response.chunks(timeout=20)


async def test_contract_3_3_every_event_is_its_own_write_one_chunk_per_frame(aura: LiveServer) -> None:
    """Read the raw chunked body: however many events a step emits at once, each is one chunk."""
    headers = {"Accept": "text/event-stream", **auth_headers()}
    body = {"prompt": TASKS_PROMPT, "context": {"activeApp": "mail"}}
    async with raw_post(aura.port, "/aura/test/stream", body, headers) as response:
        frames = frames_of_chunks(await sse_chunks(response))
    events = [f for f in frames if f.data is not None]
    assert events[-1].is_done and len(events) == 18, [f.raw for f in frames]
    session_id = events[0].session_id
    assert [f.id for f in events[:-1]] == [f"{session_id}.{n}" for n in range(1, 18)]


async def test_contract_3_3_a_replayed_burst_is_still_one_write_per_event(aura: LiveServer) -> None:
    """A resume replays the whole rest of a finished log at once: still one chunk per event."""
    headers = {"Accept": "text/event-stream", **auth_headers()}
    body = {"prompt": TASKS_PROMPT, "context": {"activeApp": "mail"}}
    async with raw_post(aura.port, "/aura/test/stream", body, headers) as response:
        original = [f for f in frames_of_chunks(await sse_chunks(response)) if f.data is not None]
    resume = {**headers, "Last-Event-ID": original[0].event_id}
    async with raw_post(aura.port, "/aura/test/stream", body, resume) as response:
        replayed = frames_of_chunks(await sse_chunks(response))
    assert [f.raw for f in replayed] == [f.raw for f in original[1:]]


async def test_heartbeats_are_single_writes_too(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(heartbeat_seconds=0.1)
    headers = {"Accept": "text/event-stream", **auth_headers()}
    body = {"prompt": EMAIL_PROMPT, "context": {"activeApp": "mail"}}
    async with raw_post(server.port, "/aura/test/stream", body, headers) as response:
        assert response.status == 200 and response.chunked
        chunks: list[bytes] = []
        with anyio.fail_after(10):
            while chunks.count(b": keepalive id:-\n\n") < 3:
                chunks.append(await response.chunk())
    frames = frames_of_chunks(chunks)
    assert "hitl" in [f.type for f in frames]


async def test_client_disconnect_does_not_cancel_the_run(client: httpx.AsyncClient, aura: LiveServer) -> None:
    async with open_stream(client, TASKS_PROMPT) as stream:
        first = await stream.next_frame()
    session_id = first.session_id
    # Reconnect from the very first id: the run went on without a reader.
    headers = {**auth_headers(), "Last-Event-ID": first.event_id}
    async with open_stream(client, "ignored", headers=headers) as stream:
        rest = await stream.rest()
    assert rest[-2].body["to"] == "done"
    assert all(f.session_id == session_id for f in rest[:-1])


async def test_last_event_id_beyond_what_was_issued_is_unknown(client: httpx.AsyncClient) -> None:
    """An id Aura never issued (seq past the log) must not hang the client waiting (CONTRACT §3.6)."""
    async with open_stream(client, TASKS_PROMPT) as stream:
        first = await stream.rest()
    session_id = first[0].session_id
    headers = {**auth_headers(), "Last-Event-ID": f"{session_id}.999"}
    async with open_stream(client, "hello", headers=headers) as stream:
        fresh = await stream.rest()
    assert fresh[0].session_id != session_id and fresh[0].seq == 1
