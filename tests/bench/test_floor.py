"""The benchmark's reference floor sends the same frames as Aura for the same prompt, so that the
benchmark compares servers doing the same work (bench/floor.py)."""

from __future__ import annotations

import httpx
import pytest

from bench.floor import Floor
from bench.scenarios import HITL_PROMPT, PLAIN_PROMPT
from tests.conftest import open_stream
from tests.support.auth import approver_headers
from tests.support.redis_server import RedisServer
from tests.support.sse import Frame, parse_frame

pytestmark = pytest.mark.anyio


async def floor_frames(floor: Floor, prompt: str) -> list[Frame]:
    frames: list[Frame] = []
    async for raw in floor.session(prompt):
        frame = parse_frame(raw.rstrip(b"\n"))
        frames.append(frame)
        if frame.type == "hitl_request":
            _, future = floor.waiters[frame.session_id]
            future.set_result(True)  # what main-service's approval does to the floor
    return frames


async def aura_frames(client: httpx.AsyncClient, prompt: str) -> list[Frame]:
    async with open_stream(client, prompt) as stream:
        if prompt == HITL_PROMPT:
            hitl = await stream.until("hitl")
            approved = await client.post(f"/aura/hitl/approve/{hitl.body['requestId']}", json={"userId": "1"},
                                         headers=approver_headers())
            assert approved.status_code == 200, approved.text
        await stream.rest()
        return [f for f in stream.frames if f.data is not None]


@pytest.mark.parametrize("prompt", [PLAIN_PROMPT, HITL_PROMPT], ids=["plain", "hitl"])
async def test_the_floor_sends_aura_s_frames(client: httpx.AsyncClient, redis_server: RedisServer, prompt: str) -> None:
    floor = Floor(redis_server.url, 30)
    try:
        ours = await floor_frames(floor, prompt)
    finally:
        await floor.aclose()
    theirs = await aura_frames(client, prompt)
    assert [f.type for f in ours] == [f.type for f in theirs]
    # The same sizes within a few bytes: results carry random ids of slightly different lengths.
    assert [abs(len(a.raw) - len(b.raw)) <= 16 for a, b in zip(ours, theirs, strict=True)] == [True] * len(ours), [
        (a.type, len(a.raw), len(b.raw)) for a, b in zip(ours, theirs, strict=True)]
