"""The first request after a standalone Redis restarted in place (same port) succeeds.

Aura's pool still holds connections to the redis-server that went away; the first command
on each of them fails, and must be sent again on a new connection, not become a 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import httpx
import pytest

from tests.conftest import open_stream
from tests.support.auth import auth_headers
from tests.support.process_server import logged_aura
from tests.support.redis_server import RedisServer
from tests.support.sse import Frame, SseStream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # `aura serve` subprocesses and redis-servers

PLAIN = "Summarize today's open tasks"
STREAM_BOUND = 30.0
CONCURRENT = 4  # sessions at once before the restart: the pool then holds several connections


@contextlib.contextmanager
def redis_server(*, persistent: bool) -> Iterator[RedisServer]:
    server = RedisServer(persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restart_in_place(server: RedisServer, how: str) -> None:
    """``stop`` (SIGTERM) or ``kill`` (SIGKILL) the redis-server, then start it again on the same port."""
    port = server.port
    if how == "kill":
        process = server.process
        assert process is not None
        process.kill()
        process.wait(timeout=10)
        server.process = None
    else:
        server.stop()
    server.start()  # RedisServer keeps its port (and dir): start() again is a restart in place
    assert server.port == port


async def rest(stream: SseStream, what: str) -> list[Frame]:
    try:
        return await stream.rest(timeout=STREAM_BOUND)
    except TimeoutError:
        raise AssertionError(f"no [DONE] within {STREAM_BOUND:g} s {what}; the stream had {stream.types}") from None


async def plain_session(client: httpx.AsyncClient, what: str) -> list[Frame]:
    async with open_stream(client, PLAIN) as stream:
        frames = await rest(stream, what)
    assert frames[-1].is_done and frames[-2].body["to"] == "done", [f.raw for f in frames]
    return frames


async def warm_pool(client: httpx.AsyncClient) -> list[str]:
    """Plain sessions run at once, so that the pool holds connections; their session ids."""
    sessions: list[str] = []

    async def one() -> None:
        frames = await plain_session(client, "before the restart")
        sessions.append(frames[0].session_id)

    async with anyio.create_task_group() as group:
        for _ in range(CONCURRENT):
            group.start_soon(one)
    return sessions


async def wait_up(client: httpx.AsyncClient) -> None:
    last: list[httpx.Response] = []

    async def up() -> bool:
        last[:] = [await client.get("/aura/health")]
        return last[0].status_code == 200 and last[0].json()["status"] == "UP"

    await wait_until(up, 15, lambda: f"/aura/health UP after the restart; last answer {last[0].text}", interval=0.1)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_the_first_request_after_redis_restarted_in_place_succeeds(how: str) -> None:
    with redis_server(persistent=False) as server, logged_aura(server.url) as aura:
        async with httpx.AsyncClient(base_url=aura.url, timeout=30) as client:
            await warm_pool(client)
            restart_in_place(server, how)
            await wait_up(client)
            # The very first stream after the restart: 200 (open_stream asserts it) and [DONE], not a 503.
            frames = await plain_session(client, f"of the first session after a {how} and restart of Redis")
            assert frames[0].seq == 1


async def test_the_first_snapshot_read_after_redis_restarted_in_place_succeeds() -> None:
    """With AOF the sessions survive the restart: the first request, a read of one of them, answers 200."""
    with redis_server(persistent=True) as server, logged_aura(server.url) as aura:
        async with httpx.AsyncClient(base_url=aura.url, timeout=30) as client:
            sessions = await warm_pool(client)
            restart_in_place(server, "kill")
            await wait_up(client)
            answer = await client.get(f"/aura/sessions/{sessions[0]}", headers=auth_headers())
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["state"] == "done"
