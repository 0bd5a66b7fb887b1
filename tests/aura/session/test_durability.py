"""Durable sessions against real processes: replay, restart, replicas, Redis outage, drain, tenancy.

Every server here is `python -m aura serve` in a subprocess, killed for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from aura.storage import keys
from tests.conftest import open_stream
from tests.support import main_service
from tests.support.auth import auth_headers
from tests.support.process_server import AuraProcess
from tests.support.redis_server import RedisServer
from tests.support.streams import EMAIL, completed_tools, follow, get_json, seqs, start_waiting_session, waiting_on
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # `aura serve` subprocesses and redis-servers


@pytest.fixture
def redis_server(private_redis_server: RedisServer) -> RedisServer:
    """Its own Redis: any other server of the suite sharing it would be a replica that adopts sessions too."""
    return private_redis_server


@pytest.fixture
def redis(private_redis: Redis) -> Redis:
    return private_redis


@pytest.fixture
def processes(redis_server: RedisServer) -> Iterator[list[AuraProcess]]:
    started: list[AuraProcess] = []
    yield started
    for process in started:
        process.kill()


def launch(processes: list[AuraProcess], redis_url: str, **env: str) -> AuraProcess:
    process = AuraProcess(redis_url, **env).start()
    processes.append(process)
    return process


async def test_replay_is_exact_from_every_cursor_and_from_another_replica(
    processes: list[AuraProcess], redis_server: RedisServer, redis: Redis
) -> None:
    a = launch(processes, redis_server.url)
    b = launch(processes, redis_server.url)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        async with open_stream(client, "Summarize today's open tasks") as stream:
            original = await stream.rest()
    session_id = original[0].session_id
    events = original[:-1]
    for cut in range(len(events) + 1):
        replay = await follow(b.url, session_id, after=cut)
        assert [f.raw for f in replay] == [f.raw for f in events[cut:]] + [b"data: [DONE]"]
    # The POST form with Last-Event-ID replays too, and runs nothing new.
    headers = {**auth_headers(), "Last-Event-ID": events[3].event_id}
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        async with open_stream(client, "Summarize today's open tasks", headers=headers) as stream:
            again = await stream.rest()
    assert [f.raw for f in again] == [f.raw for f in original[4:]]
    snapshot = await get_json(b.url, f"/aura/sessions/{session_id}", auth_headers())
    assert snapshot["data"]["state"] == "done" and snapshot["data"]["seq"] == len(events)
    assert "authorization" not in snapshot["data"]


@pytest.mark.parametrize("approve_while_down", [True, False])
async def test_restart_mid_wait_resumes_the_session_to_done(
    processes: list[AuraProcess], redis_server: RedisServer, redis: Redis, approve_while_down: bool
) -> None:
    tenant = "51" if approve_while_down else "52"  # an outbox of this parametrization's own
    headers = auth_headers(tenant=tenant)
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    first = launch(processes, redis_server.url)
    session_id, request_id, before = await start_waiting_session(first.url, headers)
    first.kill()  # SIGKILL: no drain, the lease just lapses
    if approve_while_down:
        await main_service.decide(redis, request_id, approve=True)
    second = launch(processes, redis_server.url)
    if not approve_while_down:

        async def adopted_and_waiting() -> bool:
            return await waiting_on(second.url) == 1

        await wait_until(adopted_and_waiting, 10, "the second process to adopt the waiting session")
        await main_service.decide(redis, request_id, approve=True)
    rest = await follow(second.url, session_id, after=seqs(before)[-1], headers=headers)
    assert seqs(before) + seqs(rest) == list(range(1, seqs(rest)[-1] + 1))  # no gap, no duplicate
    assert [f.body["to"] for f in rest if f.type == "state"] == ["executing", "done"]
    assert len(completed_tools(rest)) == 1 and rest[-1].is_done
    assert await redis.llen(outbox) == 1  # sent exactly once, though two processes drove the session


async def test_two_replicas_follow_and_resume_exactly_once(
    processes: list[AuraProcess], redis_server: RedisServer, redis: Redis
) -> None:
    a = launch(processes, redis_server.url)
    b = launch(processes, redis_server.url)
    tenant = "77"
    headers = auth_headers(tenant=tenant)
    await redis.delete(f"aura:outbox:{tenant}")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        async with open_stream(client, EMAIL, headers=headers) as on_a:
            hitl = await on_a.until("hitl")
            session_id = hitl.body["sessionId"]
            b_saw_hitl = asyncio.Event()
            from_b = asyncio.create_task(follow(b.url, session_id, after=0, headers=headers, seen=b_saw_hitl))
            # B follows live: it has read up to `hitl` and waits for more (not a replay after the end).
            await asyncio.wait_for(b_saw_hitl.wait(), 20)
            # Approve on B (Aura's own API) while A drives the session.
            async with httpx.AsyncClient(base_url=b.url, timeout=10) as api:
                answer = await api.post(f"/aura/hitl/approve/{hitl.body['requestId']}",
                                        headers={**headers, "X-User-ID": "1"}, json={"userId": "1"})
            assert answer.status_code == 200
            rest_a = await on_a.rest()
    rest_b = await from_b
    assert [f.raw for f in rest_b] == [f.raw for f in on_a.frames if f.comment is None]
    assert len(completed_tools(rest_a)) == 1 and await redis.llen(f"aura:outbox:{tenant}") == 1

    # A dies while a second session waits: B takes it over when the lease lapses.
    session_id, request_id, before = await start_waiting_session(a.url, headers)
    a.kill()

    async def on_b() -> bool:
        return await waiting_on(b.url) >= 1

    await wait_until(on_b, 10, "B to adopt the session of the killed A")
    await main_service.decide(redis, request_id, approve=True)
    rest = await follow(b.url, session_id, after=seqs(before)[-1], headers=headers)
    assert len(completed_tools(rest)) == 1 and rest[-2].body["to"] == "done"
    assert await redis.llen(f"aura:outbox:{tenant}") == 2


async def test_redis_restart_mid_wait_loses_nothing(processes: list[AuraProcess]) -> None:
    server = RedisServer(persistent=True)
    server.start()
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        aura = launch(processes, server.url)
        async with httpx.AsyncClient(base_url=aura.url, timeout=30) as client:
            async with open_stream(client, EMAIL) as stream:
                hitl = await stream.until("hitl")
                server.stop()
                health = await client.get("/aura/health")
                assert health.status_code == 503 and health.json()["status"] == "DEGRADED"
                await asyncio.sleep(1.5)  # longer than the lease: it lapses while Redis is away
                server.start()

                async def ready() -> bool:
                    return (await client.get("/aura/health")).status_code == 200

                await wait_until(ready, 10, "readiness once Redis is back")
                await main_service.decide(redis, hitl.body["requestId"], approve=True)
                rest = await stream.rest(timeout=20)
        assert [f.body["to"] for f in rest if f.type == "state"] == ["executing", "done"]
        assert len(completed_tools(rest)) == 1
        everything = [f for f in stream.frames if f.id]
        assert seqs(everything) == list(range(1, len(everything) + 1))
        logged = await redis.xrange(keys.events(hitl.body["sessionId"])) or []
        assert [entry_id for entry_id, _ in logged][:-1] == [f"0-{n}" for n in range(1, len(everything) + 1)]
    finally:
        await redis.aclose()
        server.stop()


async def test_sigterm_drains_streams_and_another_replica_continues(
    processes: list[AuraProcess], redis_server: RedisServer, redis: Redis
) -> None:
    a = launch(processes, redis_server.url)
    b = launch(processes, redis_server.url)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        async with open_stream(client, EMAIL) as stream:
            hitl = await stream.until("hitl")
            started = time.monotonic()
            a.terminate()
            tail = []
            with pytest.raises(StopAsyncIteration):
                while True:
                    tail.append(await stream.next_frame())
    assert time.monotonic() - started < 5
    assert [f.comment for f in tail if f.comment][-1].startswith("server draining")
    assert not any(f.is_done for f in tail)  # the session is not over
    a.wait()
    session_id = hitl.body["sessionId"]
    snapshot = await redis.hgetall(keys.snapshot(session_id))
    assert snapshot["state"] == "awaiting_approval"

    async def adopted() -> bool:
        return await waiting_on(b.url) >= 1

    await wait_until(adopted, 10, "B to adopt the drained session")
    await main_service.decide(redis, hitl.body["requestId"], approve=True)
    rest = await follow(b.url, session_id, after=hitl.seq)
    assert rest[-2].body["to"] == "done" and len(completed_tools(rest)) == 1


async def test_cross_tenant_resume_is_refused_and_leaks_nothing(
    processes: list[AuraProcess], redis_server: RedisServer
) -> None:
    a = launch(processes, redis_server.url)
    session_id, _, before = await start_waiting_session(a.url)
    intruders = [auth_headers(tenant="2"), auth_headers(sub="2")]
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        for headers in intruders:
            for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
                response = await client.request(method, f"/aura/sessions/{session_id}{path}", headers=headers)
                assert response.status_code == 404, response.text
                assert response.json()["errorCode"] == "E1004"
                assert session_id in response.json()["message"]  # only what the caller already said
            resumed = {**headers, "Last-Event-ID": before[-1].event_id}
            async with open_stream(client, "hello", headers=resumed) as stream:
                fresh = await stream.rest()
            assert all(session_id not in f.raw.decode() for f in fresh)
        unknown = await client.get("/aura/sessions/sess_000000000000000000000000", headers=auth_headers())
        assert unknown.status_code == 404


async def test_cancel_from_any_replica_aborts_the_session(
    processes: list[AuraProcess], redis_server: RedisServer
) -> None:
    a = launch(processes, redis_server.url)
    b = launch(processes, redis_server.url)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        async with open_stream(client, EMAIL) as stream:
            hitl = await stream.until("hitl")
            session_id = hitl.body["sessionId"]
            async with httpx.AsyncClient(base_url=b.url, timeout=10) as other:
                answer = await other.post(f"/aura/sessions/{session_id}/cancel", headers=auth_headers())
                assert answer.status_code == 202 and answer.json()["data"]["status"] == "cancelling"
                rest = await stream.rest()
                again = await other.post(f"/aura/sessions/{session_id}/cancel", headers=auth_headers())
    assert [f.type for f in rest[-4:]] == ["state", "content", "error", None]
    assert rest[-4].body["reason"] == "cancelled" and rest[-1].is_done
    assert rest[-3].body["content"] == "I stopped: the session was cancelled."
    assert again.status_code == 400 and again.json()["errorCode"] == "E3002"
