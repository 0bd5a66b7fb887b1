"""Per-user and per-tenant limits on live sessions, kept sessions and open streams, end to end
against a real uvicorn and redis-server (issue 10 items 1 and 2; docs/SECURITY.md, limits)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from redis.asyncio import Redis

from aura.session.quotas import LIVE_RETRY_AFTER_SECONDS
from aura.storage import keys
from tests.conftest import open_stream
from tests.support.auth import auth_headers
from tests.support.envelopes import assert_error_envelope
from tests.support.live_server import LiveServer
from tests.support.sse import SseStream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"  # waits for approval
PLAIN_PROMPT = "hi"


def new_user() -> str:
    """A user of tenant 1 that no other test has: the shared Redis keeps other tests' sessions."""
    return f"lim-{uuid.uuid4().hex[:10]}"


async def post_stream(client: httpx.AsyncClient, user: str, prompt: str = EMAIL_PROMPT) -> httpx.Response:
    """A stream request whose answer is read whole: for the ones that are refused."""
    return await client.post(
        "/aura/test/stream", json={"prompt": prompt}, headers={"Accept": "text/event-stream", **auth_headers(user)}
    )


@contextlib.asynccontextmanager
async def waiting_session(client: httpx.AsyncClient, user: str) -> AsyncIterator[tuple[str, SseStream]]:
    """A session of ``user`` waiting for approval, with its stream open."""
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers(user)) as stream:
        frame = await stream.until("hitl")
        yield frame.session_id, stream


def assert_limited(response: httpx.Response, message: str, retry_after: int | None = None) -> None:
    assert_error_envelope(response, 429, "E1005", message)
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1 and (retry_after is None or seconds == retry_after), response.headers


async def test_a_user_at_the_live_session_limit_gets_429_with_retry_after_and_nothing_starts(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    server = start_server(max_live_sessions_per_user=2)
    alice, bob = new_user(), new_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with waiting_session(client, alice) as (first, _), waiting_session(client, alice):
            refused = await post_stream(client, alice)
            assert_limited(refused, "Too many live sessions: at most 2 per user", LIVE_RETRY_AFTER_SECONDS)
            # the refused request started no session
            assert await redis.zcard(keys.user_live("1", alice)) == 2
            async with waiting_session(client, bob):  # another user of the tenant is not affected
                pass
            cancelled = await client.post(f"/aura/sessions/{first}/cancel", headers=auth_headers(alice))
            assert cancelled.status_code == 202

            async def admitted_again() -> bool:
                async with client.stream(
                    "POST", "/aura/test/stream", json={"prompt": PLAIN_PROMPT}, headers=auth_headers(alice)
                ) as response:
                    await response.aread()
                    return response.status_code == 200

            await wait_until(admitted_again, 10, "a place freed by the cancelled session", interval=0.1)


async def test_a_tenant_at_its_live_session_limit_refuses_its_other_users(
    start_server: Callable[..., LiveServer]
) -> None:
    tenant = f"9{uuid.uuid4().int % 10**8}"
    server = start_server(max_live_sessions_per_user=5, max_live_sessions_per_tenant=2)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        users = [new_user() for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            for user in users[:2]:
                await stack.enter_async_context(
                    open_stream(client, EMAIL_PROMPT, headers=auth_headers(user, tenant))
                )
            refused = await client.post(
                "/aura/test/stream", json={"prompt": EMAIL_PROMPT}, headers=auth_headers(users[2], tenant)
            )
            assert_limited(refused, "Too many live sessions: at most 2 per tenant", LIVE_RETRY_AFTER_SECONDS)


async def test_finished_sessions_count_against_the_kept_limit_until_redis_drops_them(
    start_server: Callable[..., LiveServer]
) -> None:
    """What bounds the Redis bytes of one user: finished sessions stay AURA_FINISHED_SESSION_TTL_SECONDS."""
    server = start_server(max_kept_sessions_per_user=3, finished_session_ttl_seconds=120)
    user = new_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            async with open_stream(client, PLAIN_PROMPT, headers=auth_headers(user)) as stream:
                assert (await stream.rest())[-1].is_done
        refused = await post_stream(client, user, PLAIN_PROMPT)
    assert_limited(refused, "Too many recent sessions: at most 3 per user are kept")
    assert 100 <= int(refused.headers["retry-after"]) <= 120


async def test_a_user_at_the_open_stream_limit_gets_429_and_a_closed_stream_frees_its_place(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    server = start_server(max_streams_per_user=2)
    user = new_user()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with waiting_session(client, user) as (first, _):
            async with waiting_session(client, user):
                refused = await post_stream(client, user)
                assert_limited(refused, "Too many open streams: at most 2 per user", 5)
                follow = await client.get(f"/aura/sessions/{first}/events", headers=auth_headers(user))
                assert_limited(follow, "Too many open streams: at most 2 per user", 5)
                # the refused stream created no session
                assert await redis.zcard(keys.user_live("1", user)) == 2
        # both streams closed: the client's disconnect gives their places back

        async def following() -> bool:
            async with client.stream("GET", f"/aura/sessions/{first}/events", headers=auth_headers(user)) as response:
                return response.status_code == 200

        await wait_until(following, 10, "the closed streams' places", interval=0.1)


@pytest.mark.parametrize(
    ("agent_id", "message"),
    [
        ("a" * 129, "X-Agent-ID exceeds 128 characters"),
        ("agent session 1", "X-Agent-ID may only contain letters, digits, '.', '_', ':' and '-'"),
    ],
)
async def test_an_x_agent_id_that_cannot_be_stored_and_resent_is_400(
    client: httpx.AsyncClient, agent_id: str, message: str
) -> None:
    """Issue 10 item 1: a 20 MB X-Agent-ID was stored with the session and resent on every tool call."""
    response = await client.post(
        "/aura/test/stream", json={"prompt": PLAIN_PROMPT}, headers=auth_headers(**{"X-Agent-ID": agent_id})
    )
    assert_error_envelope(response, 400, "E4000", message)


async def test_the_frontends_agent_id_is_stored_as_sent(client: httpx.AsyncClient, redis: Redis) -> None:
    agent_id = "agent_session_1706152860123_k3j4h5"  # CONTRACT §2.3: the frontend's per-tab id
    async with open_stream(client, PLAIN_PROMPT, headers=auth_headers(**{"X-Agent-ID": agent_id})) as stream:
        frames = await stream.rest()
    assert await redis.hget(keys.snapshot(frames[0].session_id), "agentId") == agent_id
