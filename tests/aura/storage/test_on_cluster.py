"""Aura on a real Redis Cluster: 3 masters with a replica each, from the suite's redis-server.

Each test runs `aura serve` processes in cluster mode (REDIS_MODE=cluster, a seed list),
and plays main-service with redis-py's own cluster client, as the Java side would with
Lettuce or Jedis in cluster mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from aura.config import Settings
from aura.errors import StoreUnavailable
from aura.ids import new_session_id
from aura.session.store import SessionStore
from aura.storage import keys
from aura.storage.calls import bounded
from aura.storage.clients import connect
from tests.conftest import open_stream
from tests.support import main_service
from tests.support.auth import SECRET, auth_headers
from tests.support.process_server import AuraProcess
from tests.support.redis_cluster import ClusterServers, command
from tests.support.streams import EMAIL, completed_tools, follow, seqs, start_waiting_session, waiting_on
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# Timeouts a loaded 2-core machine meets; WAIT must end before the socket timeout (config rule).
CLUSTER_ENV = {
    "REDIS_MODE": "cluster",
    "AURA_REDIS_TIMEOUT_SECONDS": "3",
    "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=1) as servers:
        yield servers


def cluster_client(cluster: ClusterServers) -> Redis:
    """main-service's client: redis-py's cluster client on the same seeds (typed as the Redis it stands in for)."""
    client: Redis = RedisCluster(  # type: ignore[assignment]
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.seeds], decode_responses=True
    )
    return client


@pytest.fixture
async def redis(cluster: ClusterServers) -> AsyncIterator[Redis]:
    client = cluster_client(cluster)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def processes() -> Iterator[list[AuraProcess]]:
    started: list[AuraProcess] = []
    yield started
    for process in started:
        process.kill()


def launch(processes: list[AuraProcess], cluster: ClusterServers, **env: str) -> AuraProcess:
    process = AuraProcess(cluster.url, **{**CLUSTER_ENV, **env}).start()
    processes.append(process)
    return process


async def test_plain_and_approved_sessions_complete_on_a_cluster(
    cluster: ClusterServers, redis: Redis, processes: list[AuraProcess]
) -> None:
    aura = launch(processes, cluster)
    headers = auth_headers(tenant="301")
    await redis.delete("aura:outbox:301")
    async with httpx.AsyncClient(base_url=aura.url, timeout=30) as client:
        health = (await client.get("/aura/health")).json()
        assert health["status"] == "UP" and health["checks"]["redis"]["mode"] == "cluster"
        async with open_stream(client, "Summarize today's open tasks", headers=headers) as stream:
            plain = await stream.rest()
        assert [f.body["to"] for f in plain if f.type == "state"] == ["executing", "done"]
        async with open_stream(client, EMAIL, headers=headers) as stream:
            hitl = await stream.until("hitl")
            await main_service.decide(redis, hitl.body["requestId"], approve=True)  # written and published
            rest = await stream.rest(timeout=20)
    assert len(completed_tools(rest)) == 1 and rest[-1].is_done
    assert await redis.llen("aura:outbox:301") == 1


async def test_every_key_of_a_session_is_in_the_slot_of_its_id(cluster: ClusterServers, redis: Redis) -> None:
    """What makes the append script legal on a cluster: its keys share the hash tag {sid}."""
    session_id = new_session_id()
    slot_of = redis.cluster_keyslot  # type: ignore[attr-defined]  # a RedisCluster method
    slots = {await slot_of(key) for key in
             (keys.snapshot(session_id), keys.events(session_id), keys.lease(session_id), keys.followers(session_id))}
    assert slots == {await slot_of(session_id)}


async def test_fifty_approvals_across_two_processes_each_complete_exactly_once(
    cluster: ClusterServers, redis: Redis, processes: list[AuraProcess]
) -> None:
    a, b = launch(processes, cluster), launch(processes, cluster)
    tenant = "302"
    headers = auth_headers(tenant=tenant)
    await redis.delete(f"aura:outbox:{tenant}")

    async def one(url: str) -> int:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async with open_stream(client, EMAIL, headers=headers) as stream:
                hitl = await stream.until("hitl", timeout=30)
                await main_service.decide(redis, hitl.body["requestId"], approve=True)
                rest = await stream.rest(timeout=30)
        assert rest[-1].is_done, [f.type for f in rest]
        return len(completed_tools(rest))

    sent = await asyncio.gather(*(one(a.url if n % 2 else b.url) for n in range(50)))
    assert sent == [1] * 50
    assert await redis.llen(f"aura:outbox:{tenant}") == 50


async def test_replay_by_last_event_id_from_the_other_process_is_exact(
    cluster: ClusterServers, processes: list[AuraProcess]
) -> None:
    a, b = launch(processes, cluster), launch(processes, cluster)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        async with open_stream(client, "Summarize today's open tasks") as stream:
            original = await stream.rest()
    session_id = original[0].session_id
    events = original[:-1]
    for cut in (0, 1, len(events) // 2, len(events)):
        replay = await follow(b.url, session_id, after=cut)
        assert [f.raw for f in replay] == [f.raw for f in events[cut:]] + [b"data: [DONE]"]


async def test_a_session_of_a_killed_process_is_adopted_and_completes_after_approval(
    cluster: ClusterServers, redis: Redis, processes: list[AuraProcess]
) -> None:
    a, b = launch(processes, cluster), launch(processes, cluster)
    tenant = "303"
    headers = auth_headers(tenant=tenant)
    await redis.delete(f"aura:outbox:{tenant}")
    session_id, request_id, before = await start_waiting_session(a.url, headers)
    a.kill()  # SIGKILL: no drain

    async def adopted() -> bool:
        return await waiting_on(b.url) == 1

    await wait_until(adopted, 15, "the surviving process to adopt the waiting session")
    await main_service.decide(redis, request_id, approve=True)
    rest = await follow(b.url, session_id, after=seqs(before)[-1], headers=headers)
    assert seqs(before) + seqs(rest) == list(range(1, seqs(rest)[-1] + 1))  # no gap, no duplicate
    assert len(completed_tools(rest)) == 1 and rest[-1].is_done
    assert await redis.llen(f"aura:outbox:{tenant}") == 1


async def test_sessions_and_approvals_work_after_a_master_is_replaced_by_its_replica(
    processes: list[AuraProcess]
) -> None:
    """Its own cluster: a master is killed and its replica promoted while Aura keeps running."""
    with ClusterServers(masters=3, replicas=1) as cluster:
        client = cluster_client(cluster)
        try:
            aura = launch(processes, cluster)
            tenant = "304"
            headers = auth_headers(tenant=tenant)
            # A session waits; the master of its slot dies; the approval then lands on the promoted replica.
            session_id, request_id, before = await start_waiting_session(aura.url, headers)
            dead_port = cluster.node_for_key(keys.snapshot(session_id))[1]
            cluster.kill(dead_port)
            cluster.wait_for_failover(dead_port)
            # The dead master comes back as the new one's replica: WAIT before send_email has one again.
            cluster.restart(dead_port)
            await main_service.decide(client, request_id, approve=True)
            rest = await follow(aura.url, session_id, after=seqs(before)[-1], headers=headers, timeout=40)
            failed = [f.body for f in rest if f.type == "tool_execution" and f.body["status"] == "failed"]
            assert len(completed_tools(rest)) == 1 and rest[-1].is_done, failed

            async def healthy() -> bool:
                async with httpx.AsyncClient(base_url=aura.url, timeout=5) as http:
                    return (await http.get("/aura/health")).status_code == 200

            await wait_until(healthy, 20, "readiness to be UP again after the failover")
            # New sessions, on every slot, work without restarting Aura.
            async with httpx.AsyncClient(base_url=aura.url, timeout=30) as http:
                for _ in range(6):
                    async with open_stream(http, EMAIL, headers=headers) as stream:
                        hitl = await stream.until("hitl", timeout=20)
                        await main_service.decide(client, hitl.body["requestId"], approve=True)
                        done = await stream.rest(timeout=20)
                    assert len(completed_tools(done)) == 1 and done[-1].is_done
            assert await client.llen(f"aura:outbox:{tenant}") == 7
        finally:
            await client.aclose()


async def test_sessions_on_live_masters_keep_working_while_the_client_default_node_is_down() -> None:
    """The two workarounds in aura/storage: the command table read once from any primary (redis-py
    re-reads it from its default node after any connection error) and EVAL on NOSCRIPT (redis-py's
    SCRIPT LOAD goes to every primary). Without them, every create below failed once one had."""
    with ClusterServers(masters=3, replicas=0, node_timeout_ms=60_000) as cluster:  # no failover in this test
        for _, port in cluster.masters():
            command(port, "CONFIG", "SET", "cluster-require-full-coverage", "no")  # live slots keep serving
        settings = Settings(jwt_secret=SECRET, redis_url=cluster.url, redis_mode="cluster",
                            redis_timeout_seconds=1, redis_replica_acks=0)
        clients = connect(settings)
        try:
            await clients.initialize(5)
            store = SessionStore(clients.commands, "aura-live", ttl_seconds=1800, max_events=100, lease_seconds=3)
            dead = clients.commands.get_default_node().port  # type: ignore[attr-defined]  # a RedisCluster method
            on_dead = [sid for sid in (new_session_id() for _ in range(40)) if cluster.node_for_key(sid)[1] == dead]
            on_live = [sid for sid in (new_session_id() for _ in range(40)) if cluster.node_for_key(sid)[1] != dead]
            cluster.kill(dead)
            for doomed, sid in zip(on_dead[:3], on_live[:3], strict=True):
                with pytest.raises(StoreUnavailable):  # its own master is down: refused, and clearly
                    await bounded(store.create(doomed, {"sessionId": doomed, "seq": "0"}), 10, "create")
                # ... and the failure scheduled a topology refresh, which must not take the live masters down too.
                await bounded(store.create(sid, {"sessionId": sid, "seq": "0"}), 10, "create")
                await bounded(store.append(sid, [(1, "id: x.1\n\n")], {"seq": "1"}), 10, "append")
            assert await store.owners(on_live[:3]) == ["aura-live"] * 3
        finally:
            await clients.aclose()
