"""Following sessions over HTTP as a browser would: the helpers of the multi-process tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import open_stream
from tests.support.auth import auth_headers
from tests.support.sse import Frame, SseStream

EMAIL = "Send an email to kim@example.com saying the release is ready"  # a session that waits for approval


async def follow(url: str, session_id: str, after: int | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 20, seen: asyncio.Event | None = None) -> list[Frame]:
    """Every frame of the session after ``after``, up to [DONE]; ``seen`` is set once `hitl` arrived."""
    hdrs = {**(headers or auth_headers()), "Accept": "text/event-stream"}
    if after is not None:
        hdrs["Last-Event-ID"] = f"{session_id}.{after}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream("GET", f"/aura/sessions/{session_id}/events", headers=hdrs) as response:
            assert response.status_code == 200, (await response.aread()).decode()
            stream = SseStream(response)
            if seen is not None:
                await stream.until("hitl", timeout=timeout)
                seen.set()
            await stream.rest(timeout=timeout)
            return [f for f in stream.frames if f.comment is None or f.data is not None]


def seqs(frames: list[Frame]) -> list[int]:
    return [f.seq for f in frames if f.id]


def completed_tools(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.type == "tool_execution" and f.body["status"] == "completed"]


async def get_json(url: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        body = (await client.get(path, headers=headers)).json()
    assert isinstance(body, dict), body
    return body


async def waiting_on(url: str) -> int:
    return int((await get_json(url, "/aura/health", auth_headers()))["sessions"]["awaitingApproval"])


async def start_waiting_session(url: str, headers: dict[str, str] | None = None) -> tuple[str, str, list[Frame]]:
    """Open a HITL session, read up to its `hitl` event, then drop the connection."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with open_stream(client, EMAIL, headers=headers) as stream:
            hitl = await stream.until("hitl")
            frames = [f for f in stream.frames if f.comment is None]
    return hitl.body["sessionId"], hitl.body["requestId"], frames
