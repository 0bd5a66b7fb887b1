"""A tenant's live sessions as the console lists them, read from a real Redis (the quota sets, the snapshots)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from aura.auth import Principal
from aura.errors import StoreUnavailable
from aura.ids import new_session_id
from aura.session.listing import MAX_LISTED, PROMPT_CHARS, LiveSessions
from aura.session.quotas import QuotaLimits, SessionQuotas
from aura.storage import keys
from aura.storage.scripts import run_scripts
from tests.support.sessions import store_for

pytestmark = pytest.mark.anyio


def quotas(redis: Redis) -> SessionQuotas:
    limits = QuotaLimits(live_per_user=1000, live_per_tenant=1000, kept_per_user=1000, live_ttl_seconds=3600,
                         finished_ttl_seconds=600)
    return SessionQuotas(redis, limits, redis_timeout_seconds=2)


def listing(redis: Redis) -> LiveSessions:
    return LiveSessions(quotas(redis), store_for(redis), redis_timeout_seconds=2)


def fresh_tenant() -> str:
    """A tenant no other test uses: the shared Redis keeps other tests' entries."""
    return f"t-{uuid.uuid4().hex[:8]}"


async def stored(redis: Redis, owner: Principal, *, state: str = "awaiting_approval", prompt: str = "hi",
                 tenant: str | None = None, pending: str = "") -> str:
    """A session counted as its owner's tenant's (the real admission script) with a snapshot."""
    sid = new_session_id()
    [answer] = await run_scripts(redis, [quotas(redis).admission(owner, sid)])
    assert answer == 0
    await redis.hset(keys.snapshot(sid), mapping={
        "sessionId": sid, "tenantId": tenant or owner.tenant_id, "userId": owner.user_id, "prompt": prompt,
        "state": state, "createdAt": repr(time.time()), "updatedAt": repr(time.time()), "pendingRequestId": pending,
        "context": '{"big": "' + "x" * 1000 + '"}',
    })
    return sid


async def test_lists_the_tenants_live_sessions_with_the_prompt_of_the_callers_own_only(redis: Redis) -> None:
    tenant = fresh_tenant()
    mine = await stored(redis, Principal("1", tenant), prompt="내 세션: 메일 보내줘", pending="req_abc")
    theirs = await stored(redis, Principal("2", tenant), prompt="secret plans", pending="req_theirs")
    elsewhere = await stored(redis, Principal("1", fresh_tenant()))

    found = await listing(redis).of_tenant(Principal("1", tenant))

    assert found.total == 2 and found.limit == MAX_LISTED
    by_id = {session.session_id: session for session in found.sessions}
    assert set(by_id) == {mine, theirs} and elsewhere not in by_id
    assert by_id[mine].own and by_id[mine].prompt == "내 세션: 메일 보내줘"
    assert by_id[mine].state.value == "awaiting_approval" and by_id[mine].pending_request_id == "req_abc"
    assert not by_id[theirs].own and by_id[theirs].prompt is None and by_id[theirs].user_id == "2"
    # Another user's waiting session: its state, never its request id (whose record holds the action's params).
    assert by_id[theirs].state.value == "awaiting_approval" and by_id[theirs].pending_request_id is None


async def test_at_most_the_newest_fifty_and_the_count_of_all(redis: Redis) -> None:
    tenant = fresh_tenant()
    owner = Principal("1", tenant)
    ids = [await stored(redis, owner) for _ in range(MAX_LISTED + 5)]
    base = int(time.time() * 1000) + 3_600_000
    await redis.zadd(keys.tenant_live(tenant), {sid: base + i for i, sid in enumerate(ids)})  # a clear order

    found = await listing(redis).of_tenant(owner)

    assert found.total == MAX_LISTED + 5
    assert [session.session_id for session in found.sessions] == ids[::-1][:MAX_LISTED]


async def test_lapsed_ended_gone_and_foreign_entries_are_left_out(redis: Redis) -> None:
    tenant = fresh_tenant()
    owner = Principal("1", tenant)
    live = await stored(redis, owner, state="planning")
    ended = await stored(redis, owner, state="done")  # its end written, its quota entry not yet released
    gone = await stored(redis, owner)
    await redis.delete(keys.snapshot(gone))
    foreign = await stored(redis, owner, tenant="someone-else")  # a snapshot naming another tenant
    broken = await stored(redis, owner, state="dancing")
    lapsed = await stored(redis, owner)
    await redis.zadd(keys.tenant_live(tenant), {lapsed: int(time.time() * 1000) - 1})

    found = await listing(redis).of_tenant(owner)

    assert [session.session_id for session in found.sessions] == [live]
    assert found.total == 5  # every entry that has not lapsed, ended or not: what the tenant's limit counts
    assert {ended, gone, foreign, broken}.isdisjoint(session.session_id for session in found.sessions)


async def test_an_own_prompt_is_clipped(redis: Redis) -> None:
    owner = Principal("1", fresh_tenant())
    await stored(redis, owner, prompt="가" * (PROMPT_CHARS + 50))
    [session] = (await listing(redis).of_tenant(owner)).sessions
    assert session.prompt == "가" * PROMPT_CHARS


async def test_a_tenant_without_sessions_lists_none(redis: Redis) -> None:
    found = await listing(redis).of_tenant(Principal("1", fresh_tenant()))
    assert found.sessions == [] and found.total == 0


async def test_a_redis_that_never_answers_is_a_store_error_within_the_timeout() -> None:
    release = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # the command arrives; no reply ever leaves
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = Redis(host="127.0.0.1", port=port, socket_timeout=None)
    limits = QuotaLimits(live_per_user=1, live_per_tenant=1, kept_per_user=1, live_ttl_seconds=3600,
                         finished_ttl_seconds=600)
    live = LiveSessions(SessionQuotas(silent, limits, redis_timeout_seconds=0.3), store_for(silent),
                        redis_timeout_seconds=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await live.of_tenant(Principal("1", fresh_tenant()))
        assert time.monotonic() - started < 2
    finally:
        await silent.aclose()
        release.set()
        server.close()
        await server.wait_closed()
