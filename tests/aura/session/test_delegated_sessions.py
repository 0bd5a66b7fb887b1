"""Issue 10 items 1 and 8 through real servers: no credential in Redis, delegated tokens for DWP, and
what a finished session leaves behind.

Every server here is a real uvicorn (tests/support/live_server.py) on a Redis of this module's
own, so no other server of the suite adopts these sessions. The model and the DWP gateway are
mocked with respx; the tokens DWP receives are checked with the suite's secret.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from jose import jwt
from redis.asyncio import Redis

from aura.config import Settings
from aura.session.snapshot import F, LEGACY_AUTHORIZATION
from aura.storage import keys
from tests.conftest import open_stream
from tests.support import main_service
from tests.support.auth import OTHER_SECRET, bearer, make_token
from tests.support.delegated_tokens import delegated_claims, every_string, tokens_in
from tests.support.live_server import LiveServer
from tests.support.llm import GATEWAY, LLM, MAIL_TOOL, text_stream, tool_call_stream
from tests.support.redis_server import RedisServer
from tests.support.sse import Frame
from tests.support.streams import EMAIL, follow, get_json

pytestmark = pytest.mark.anyio

MAIL_URL = f"{GATEWAY}/api/mail/send"
FINISHED_TTL = 120
RULES: dict[str, Any] = {"llm_base_url": None, "llm_model": None}  # the rule-based planner: EMAIL waits for approval
CONTEXT = {"activeApp": "mail", "document": "x" * 200_000}  # what the frontend may send: up to 256 KiB


@pytest.fixture
async def redis(private_redis: Redis) -> AsyncIterator[Redis]:
    await private_redis.flushall()  # the previous test's servers are stopped: start from nothing
    yield private_redis


@pytest.fixture
def servers(base_settings: Settings, private_redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``servers(**overrides)``: a replica on this module's Redis, with the model and the mail tool."""
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [MAIL_TOOL]}))
    started: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        settings = replace(base_settings, redis_url=private_redis_server.url, finished_session_ttl_seconds=FINISHED_TTL,
                           llm_base_url="https://llm.test/v1", llm_model="m", llm_max_retries=0,
                           llm_timeout_seconds=5, dwp_gateway_url=GATEWAY, tools_file=str(tools))
        server = LiveServer(replace(settings, **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


def plan_a_mail(router: respx.MockRouter) -> respx.Route:
    """The model asks for send_dwp_mail (which needs approval), then answers."""
    return router.post(LLM).mock(side_effect=[
        tool_call_stream("send_dwp_mail", '{"to":"kim@example.com","subject":"Release"}'),
        text_stream("Mail sent."),
    ])


async def wait_for_approval(server: LiveServer, headers: dict[str, str], body: dict[str, Any]) -> Frame:
    """Open a session, read up to its `hitl` event, and drop the connection (the session goes on)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, headers=headers, body=body) as stream:
            return await stream.until("hitl")


def the_tool_result(frames: list[Frame]) -> dict[str, Any]:
    [last] = [f for f in frames if f.type == "tool_execution" and f.body["status"] != "executing"]
    return last.body


async def snapshot_fields(redis: Redis, session_id: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (await redis.hgetall(keys.snapshot(session_id))).items()}


# -- the caller's token ---------------------------------------------------------------------------
async def test_the_callers_token_is_never_stored_in_redis(servers: Callable[..., LiveServer], redis: Redis) -> None:
    server = servers(**RULES)
    token = make_token("1", "1", email="kim@example.com")
    hitl = await wait_for_approval(server, bearer(token), {"prompt": EMAIL, "context": {"activeApp": "mail"}})
    session_id = hitl.body["sessionId"]
    # While it waits: the snapshot has the claims it may act on, and nothing in Redis authenticates.
    live = await snapshot_fields(redis, session_id)
    delegation = json.loads(live[F.DELEGATION])
    assert delegation["claims"] == {"sub": "1", "tenant_id": "1", "email": "kim@example.com"}
    assert delegation["exp"] == jwt.get_unverified_claims(token)["exp"]
    assert LEGACY_AUTHORIZATION not in live
    strings = [value for values in (await every_string(redis)).values() for value in values]
    assert not any(token in value for value in strings)
    assert await tokens_in(redis) == []
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    rest = await follow(server.url, session_id, after=hitl.seq, headers=bearer(token))
    assert rest[-1].is_done
    assert await tokens_in(redis) == []


async def test_an_adopting_replica_calls_dwp_with_a_delegated_token(
    servers: Callable[..., LiveServer], redis: Redis, mocked: respx.MockRouter
) -> None:
    plan_a_mail(mocked)
    dwp = mocked.post(MAIL_URL).mock(return_value=httpx.Response(200, json={"status": "SUCCESS"}))
    a, b = servers(), servers()
    token = make_token("5", "1", email="kim@example.com", role="user", jti="only-once")
    headers = bearer(token, **{"X-User-ID": "5"})
    hitl = await wait_for_approval(a, headers, {"prompt": "Mail kim about the release", "context": {}})
    a.stop()  # a deploy: A lets go of the session, B adopts it from its snapshot
    await main_service.decide(redis, hitl.body["requestId"], approve=True, user_id="5")
    rest = await follow(b.url, hitl.body["sessionId"], after=hitl.seq, headers=headers)
    assert the_tool_result(rest)["status"] == "completed" and rest[-1].is_done

    sent = dwp.calls.last.request.headers["authorization"]
    assert sent != f"Bearer {token}"
    claims = delegated_claims(sent)  # signed with the suite's secret
    assert {k: v for k, v in claims.items() if k not in ("iat", "exp")} == {
        "sub": "5", "tenant_id": "1", "email": "kim@example.com", "role": "user", "azp": "aura"}
    assert abs(claims["iat"] - time.time()) < 30
    assert claims["exp"] - claims["iat"] == 120  # AURA_DELEGATED_TOKEN_SECONDS
    assert claims["exp"] <= jwt.get_unverified_claims(token)["exp"]


async def test_a_delegated_token_never_outlives_the_users_own(
    servers: Callable[..., LiveServer], redis: Redis, mocked: respx.MockRouter
) -> None:
    plan_a_mail(mocked)
    dwp = mocked.post(MAIL_URL).mock(return_value=httpx.Response(200, json={}))
    server = servers(delegated_token_seconds=3600)
    token = make_token("1", "1", lifetime=600)
    hitl = await wait_for_approval(server, bearer(token), {"prompt": "Mail kim", "context": {}})
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    await follow(server.url, hitl.body["sessionId"], after=hitl.seq, headers=bearer(token))
    assert delegated_claims(dwp.calls.last.request.headers["authorization"])["exp"] == \
        jwt.get_unverified_claims(token)["exp"]


async def test_a_dwp_call_after_the_users_token_expired_is_not_sent_and_fails_its_step(
    servers: Callable[..., LiveServer], redis: Redis, mocked: respx.MockRouter
) -> None:
    """What forwarding the expired token would get at the gateway (401) happens without the call."""
    plan_a_mail(mocked)
    dwp = mocked.post(MAIL_URL).mock(return_value=httpx.Response(200, json={}))
    server = servers()
    token = make_token("1", "1", lifetime=2)
    hitl = await wait_for_approval(server, bearer(token), {"prompt": "Mail kim", "context": {}})
    await asyncio.sleep(max(0.0, jwt.get_unverified_claims(token)["exp"] - time.time()) + 0.5)
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    rest = await follow(server.url, hitl.body["sessionId"], after=hitl.seq, headers=bearer(make_token("1", "1")))
    result = the_tool_result(rest)
    assert result["status"] == "failed"
    assert "send_dwp_mail was not called: the user's token has expired, so DWP would answer HTTP 401" in json.dumps(result)
    assert not dwp.called
    assert [f.body["to"] for f in rest if f.type == "state"][-1] == "aborted"


# -- snapshots an older version wrote ---------------------------------------------------------------------
@pytest.mark.parametrize("legacy_secret", ["suite", "other"])
async def test_an_adopting_replica_mints_from_a_token_an_older_version_stored_only_if_it_verifies(
    servers: Callable[..., LiveServer], redis: Redis, mocked: respx.MockRouter, legacy_secret: str
) -> None:
    plan_a_mail(mocked)
    dwp = mocked.post(MAIL_URL).mock(return_value=httpx.Response(200, json={}))
    a = servers()
    hitl = await wait_for_approval(a, bearer(make_token("1", "1")), {"prompt": "Mail kim", "context": {}})
    session_id = hitl.body["sessionId"]
    a.stop()
    # What the previous version left: the caller's "Bearer <jwt>", and no delegation.
    if legacy_secret == "suite":
        legacy = make_token("1", "1", email="old@example.com")
    else:
        legacy = make_token("1", "1", secret=OTHER_SECRET)
    await redis.hdel(keys.snapshot(session_id), F.DELEGATION)
    await redis.hset(keys.snapshot(session_id), LEGACY_AUTHORIZATION, f"Bearer {legacy}")
    b = servers()
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    rest = await follow(b.url, session_id, after=hitl.seq, headers=bearer(make_token("1", "1")))
    assert rest[-1].is_done
    if legacy_secret == "suite":
        sent = dwp.calls.last.request.headers["authorization"]
        assert sent != f"Bearer {legacy}"
        claims = delegated_claims(sent)
        assert (claims["email"], claims["azp"]) == ("old@example.com", "aura")
    else:
        assert not dwp.called
        assert "the user's token no longer verifies, so DWP would answer HTTP 401" in json.dumps(the_tool_result(rest))
    assert await redis.hget(keys.snapshot(session_id), LEGACY_AUTHORIZATION) is None  # gone with the end
    assert await tokens_in(redis) == []


# -- a finished session ------------------------------------------------------------------------------------
async def test_a_finished_session_keeps_no_credential_and_expires_sooner(
    servers: Callable[..., LiveServer], redis: Redis
) -> None:
    server = servers(**RULES)
    headers = bearer(make_token("1", "1"))
    hitl = await wait_for_approval(server, headers, {"prompt": EMAIL, "context": CONTEXT})
    session_id = hitl.body["sessionId"]
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    first = await follow(server.url, session_id, after=0, headers=headers)
    assert first[-1].is_done

    left = await snapshot_fields(redis, session_id)
    assert not {F.DELEGATION, LEGACY_AUTHORIZATION, F.CONTEXT} & set(left)
    assert "conversation" not in json.loads(left[F.PLAN])
    for key in (keys.snapshot(session_id), keys.events(session_id)):
        assert FINISHED_TTL - 10 <= await redis.ttl(key) <= FINISHED_TTL
    assert not await redis.exists(keys.lease(session_id))
    assert await tokens_in(redis) == []  # KEYS *, every string of every key

    # The public view stays valid: context is {}; the rest as it was.
    view = (await get_json(server.url, f"/aura/sessions/{session_id}", headers))["data"]
    assert view["context"] == {} and view["state"] == "done" and view["prompt"] == EMAIL
    assert "send_email" in [s["tool"] for s in view["plan"]["steps"]] and view["outcomes"]
    # Replays still work, by GET .../events and by the stream's Last-Event-ID.
    again = await follow(server.url, session_id, after=0, headers=headers)
    assert [f.raw for f in again] == [f.raw for f in first]
    resume = {**headers, "Last-Event-ID": f"{session_id}.{hitl.seq}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, headers=resume, body={"prompt": EMAIL, "context": CONTEXT}) as stream:
            resumed = await stream.rest()
    assert [f.raw for f in resumed] == [f.raw for f in first if f.id and f.seq > hitl.seq] + [b"data: [DONE]"]


async def session_bytes(redis: Redis, session_id: str) -> dict[str, int]:
    """``MEMORY USAGE`` (every element counted) of each key that names the session."""
    found = {}
    for key in sorted(await redis.keys(f"*{session_id}*")):
        found[str(key)] = int(await redis.memory_usage(key, samples=0) or 0)
    return found


async def test_a_finished_session_takes_a_few_kilobytes_of_redis_whatever_its_context(
    servers: Callable[..., LiveServer], redis: Redis
) -> None:
    """Measured with MEMORY USAGE on each key. Before issue 10 a finished session with this 200 KB
    context took 236 KB (plain) and 242 KB (with an approval) for an hour."""
    server = servers(**RULES)
    headers = bearer(make_token("1", "1"))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, headers=headers,
                               body={"prompt": "Summarize today's open tasks", "context": CONTEXT}) as stream:
            plain = (await stream.rest())[0].session_id
    hitl = await wait_for_approval(server, headers, {"prompt": EMAIL, "context": CONTEXT})
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    assert (await follow(server.url, hitl.body["sessionId"], after=hitl.seq, headers=headers))[-1].is_done

    # The bounds include the AI-workspace page's events (thought_chain, action_execution: docs/EVENTS.md).
    for session_id, log_bound in ((plain, 12 * 1024), (hitl.body["sessionId"], 16 * 1024)):
        sizes = await session_bytes(redis, session_id)
        snapshot, log = sizes.pop(keys.snapshot(session_id)), sizes.pop(keys.events(session_id))
        assert snapshot < 4 * 1024, f"snapshot of a finished session: {snapshot} bytes"
        assert log < log_bound, f"log of a finished session: {log} bytes"
        # What is left: the contract's HITL keys (CONTRACT §4.2), and the mark a follower may set again
        # after the end (about a lease); neither outlives the finished session.
        followers = sizes.pop(keys.followers(session_id), None)
        if followers is not None:
            assert 0 < await redis.ttl(keys.followers(session_id)) <= FINISHED_TTL
        assert all(key.startswith("hitl:") for key in sizes), sizes
