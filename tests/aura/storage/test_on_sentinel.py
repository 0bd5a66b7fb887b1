"""Aura on a real Redis Sentinel set-up (and on a standalone primary demoted behind its address).

`aura serve` runs in a subprocess against a primary, a replica and three sentinels
(tests/support/redis_sentinel.py); the primary is failed over or SIGKILLed while a session
waits for its approval, and the session must end on the new primary, on the stream it had.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from aura.storage import keys
from tests.conftest import open_stream
from tests.support import main_service
from tests.support.process_server import AuraProcess, logged_aura
from tests.support.redis_cluster import HOST, Address, command
from tests.support.redis_sentinel import SentinelServers
from tests.support.redis_server import RedisServer
from tests.support.sse import Frame, SseStream
from tests.support.streams import completed_tools
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # `aura serve` subprocesses, redis-servers and sentinels

EMAIL = "Send an email to kim@example.com saying the release is ready"
OUTBOX = "aura:outbox:1"  # send_email's list for the default tenant of auth_headers()
SENTINEL_ENV = {"AURA_REDIS_TIMEOUT_SECONDS": "3", "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS": "1"}
STREAM_BOUND = 60.0  # no step of a stream may take longer: a hang fails, it does not stall the suite

# Typed by hand: redis-py leaves redis.asyncio.sentinel's constructor and master_for unannotated.
new_sentinel: Callable[..., Sentinel] = Sentinel


@contextlib.asynccontextmanager
async def main_service_client(servers: SentinelServers) -> AsyncIterator[Redis]:
    """main-service's Redis: the primary found through the sentinels, so it follows a failover too."""
    sentinel = new_sentinel(servers.sentinels, socket_timeout=2)
    master_for: Callable[..., Redis] = sentinel.master_for
    client = master_for(servers.master_name, decode_responses=True, socket_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()
        for connection in sentinel.sentinels:
            await connection.aclose()


async def outbox_on(address: Address) -> int:
    """How many mails the node at ``address`` holds, asked of it directly (not through the sentinels)."""
    async with Redis(host=address[0], port=address[1], decode_responses=True, socket_timeout=2) as node:
        return int(await node.llen(OUTBOX))


async def until(stream: SseStream, type_: str, what: str) -> Frame:
    try:
        return await stream.until(type_, timeout=STREAM_BOUND)
    except TimeoutError:
        raise AssertionError(f"no {type_!r} event within {STREAM_BOUND:g} s {what}; the stream had {stream.types}") from None


async def rest(stream: SseStream, what: str) -> list[Frame]:
    try:
        return await stream.rest(timeout=STREAM_BOUND)
    except TimeoutError:
        raise AssertionError(f"no [DONE] within {STREAM_BOUND:g} s {what}; the stream had {stream.types}") from None


def failed_tools(frames: list[Frame]) -> list[dict[str, Any]]:
    return [f.body for f in frames if f.type == "tool_execution" and f.body["status"] == "failed"]


def client_for(aura: AuraProcess) -> httpx.AsyncClient:
    # Reads may wait out a whole failover with no byte on the wire.
    return httpx.AsyncClient(base_url=aura.url, timeout=httpx.Timeout(10, read=STREAM_BOUND))


async def health(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/aura/health")


async def approve_and_finish(
    client: httpx.AsyncClient, stream: SseStream, main: Redis, request_id: str, what: str
) -> list[Frame]:
    await main_service.decide(main, request_id, approve=True)
    frames = await rest(stream, what)
    assert [f.body["to"] for f in frames if f.type == "state"] == ["executing", "done"], (
        f"{what}: states {[f.body for f in frames if f.type == 'state']}, failed tools {failed_tools(frames)}"
    )
    assert len(completed_tools(frames)) == 1 and frames[-1].is_done, [f.raw for f in frames]
    return frames


async def wait_through(fault: Callable[[SentinelServers], Address]) -> None:
    """A session waits for approval while ``fault`` moves the primary; then it and a new one complete."""
    with SentinelServers(down_after_ms=1000) as servers, logged_aura(servers.url, **SENTINEL_ENV) as aura:
        old = servers.primary()
        async with main_service_client(servers) as main, client_for(aura) as client:
            assert (await health(client)).json()["checks"]["redis"] == {"status": "UP", "mode": "sentinel"}
            async with open_stream(client, EMAIL) as stream:
                hitl = await until(stream, "hitl", "before the fault")
                started = time.monotonic()
                new = await anyio.to_thread.run_sync(fault, servers)  # the event loop keeps serving the stream
                moved = time.monotonic() - started
                assert new != old, f"the primary did not move: {old}"
                await approve_and_finish(client, stream, main, hitl.body["requestId"],
                                         f"after the primary moved from {old[1]} to {new[1]} in {moved:.1f} s")
            assert await main.get(f"hitl:request:{hitl.body['requestId']}") is not None  # main on the new primary
            assert await outbox_on(new) == 1, "send_email ran other than exactly once on the new primary"

            # A new session on the new primary, from the same process.
            async with open_stream(client, EMAIL) as stream:
                hitl = await until(stream, "hitl", "of a new session after the fault")
                await approve_and_finish(client, stream, main, hitl.body["requestId"], "of a new session after the fault")
            assert await outbox_on(new) == 2
            # Not asserted: that the sentinels still name `new` now. On a loaded machine they once failed
            # back after the old node rejoined, which says nothing about Aura (everything above held).


async def test_a_session_waiting_through_a_sentinel_failover_completes_on_the_new_primary() -> None:
    await wait_through(lambda servers: servers.failover())


def kill_and_replace_primary(servers: SentinelServers) -> Address:
    """SIGKILL the primary once its replica has every write; the killed node comes back as the new one's replica.

    The fence: a write and WAIT on one connection, so the `hitl` request record (written before the
    kill, and not a side effect Aura WAITs for) is on the replica; losing it would be Redis's
    asynchronous replication, not Aura. The restart: Aura WAITs for one replica before send_email,
    and the new primary has none until the old node rejoins.
    """
    primary = servers.primary()
    with redis.Redis(host=primary[0], port=primary[1], socket_timeout=5) as direct, direct.pipeline(transaction=False) as pipe:
        pipe.set("test:fence", "1")
        pipe.wait(1, 3000)
        _, acknowledged = pipe.execute()
    assert acknowledged == 1, "the replica did not catch up before the kill"
    old = servers.kill_primary()
    new = servers.wait_for_new_primary()
    servers.restart(old[1])
    return new


async def test_a_session_waiting_through_a_sigkill_of_the_primary_completes() -> None:
    await wait_through(kill_and_replace_primary)


async def test_health_is_not_up_while_bound_to_a_demoted_primary() -> None:
    bound, other = RedisServer(), RedisServer()
    bound.start()
    try:
        other.start()
        direct = Redis(host=HOST, port=bound.port, decode_responses=True, socket_timeout=2)
        try:
            with logged_aura(bound.url) as aura:
                async with client_for(aura) as client:
                    answer = await health(client)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["status"] == "UP"
                    assert answer.json()["checks"]["redis"] == {"status": "UP", "mode": "standalone"}

                    await direct.replicaof(HOST, other.port)  # demoted behind its address
                    last: list[httpx.Response] = []

                    async def redis_down() -> bool:
                        last[:] = [await health(client)]
                        body = last[0].json()
                        return last[0].status_code == 503 and body["checks"]["redis"]["status"] == "DOWN"

                    def seen() -> str:
                        return f"/aura/health of a demoted primary; last answer {last[0].status_code} {last[0].text}"

                    await wait_until(redis_down, 5, seen, interval=0.1)
                    assert last[0].json()["status"] == "DEGRADED"

                    await direct.replicaof("NO", "ONE")

                    async def up() -> bool:
                        last[:] = [await health(client)]
                        return last[0].status_code == 200 and last[0].json()["status"] == "UP"

                    await wait_until(up, 5, lambda: f"UP once promoted again; last answer {last[0].text}", interval=0.1)
                    assert last[0].json()["checks"]["redis"] == {"status": "UP", "mode": "standalone"}
        finally:
            await direct.aclose()
    finally:
        bound.stop()
        other.stop()


async def test_sessions_started_in_the_window_where_the_old_primary_still_takes_writes_are_kept() -> None:
    """Regression: after SENTINEL FAILOVER the old primary stays writable for about 10 s, until Sentinel
    reconfigures it; pooled connections kept writing there, and its resync as a replica dropped it all."""
    with SentinelServers(down_after_ms=1000) as servers, logged_aura(servers.url, **SENTINEL_ENV) as aura:
        old = servers.primary()
        async with client_for(aura) as client:
            async with open_stream(client, "Summarize today's open tasks") as stream:  # the pool has connections
                await rest(stream, "before the failover")
            sentinel = next(iter(servers.sentinel_nodes.values()))
            assert sentinel.command("SENTINEL", "FAILOVER", servers.master_name) in ("OK", True)
            await wait_until(lambda: servers.primary() != old, 20, "the sentinels to name a new primary")
            new = servers.primary()
            assert command(old[1], "ROLE")[0] in (b"master", "master")  # still writable
            await anyio.sleep(2)  # longer than Aura's primary check: it must have moved by now
            assert command(old[1], "ROLE")[0] in (b"master", "master")  # still inside the window
            session_ids = []
            for _ in range(3):
                async with open_stream(client, "Summarize today's open tasks") as stream:
                    frames = await rest(stream, "inside the window")
                session_ids.append(frames[0].session_id)
            # Sentinel demotes the old primary; it then resyncs from the new one, dropping what it alone had.
            await wait_until(lambda: command(old[1], "ROLE")[0] in (b"slave", "slave"), 30,
                             "Sentinel to make the old primary a replica")
            await wait_until(lambda: command(old[1], "ROLE")[3] in (b"connected", "connected"), 30,
                             "the old primary to resync from the new one")
        async with Redis(host=new[0], port=new[1], decode_responses=True, socket_timeout=2) as primary:
            for session_id in session_ids:
                assert await primary.hget(keys.snapshot(session_id), "state") == "done", session_id
