"""The process-wide HITL subscriber: matching, tolerance and recovery."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from aura.hitl.store import HitlStore
from aura.hitl.hub import SignalHub
from aura.hitl.signals import Decision
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

APPROVE = '{{"type":"approval","requestId":"{rid}","status":"approved","timestamp":1}}'


def hub_for(redis: Redis, sweep: float = 60) -> SignalHub:
    return SignalHub(redis, HitlStore(redis), sweep_seconds=sweep, redis_timeout_seconds=2)


async def test_deliver_matches_request_id_and_ignores_the_rest(redis):
    hub = hub_for(redis)
    waiter = hub.register("sess_a", "req_1")
    assert not hub.deliver("sess_a", "garbage")
    assert not hub.deliver("sess_a", APPROVE.format(rid="req_old"))
    assert not hub.deliver("sess_unknown", APPROVE.format(rid="req_1"))
    assert not waiter.decision.done()
    assert hub.deliver("sess_a", APPROVE.format(rid="req_1"))
    assert not hub.deliver("sess_a", '{"type":"rejection","requestId":"req_1","reason":"late"}')
    assert waiter.decision.result().decision is Decision.APPROVED
    assert hub.ignored_signals == 4
    hub.unregister(waiter)
    assert hub.waiting == 0


async def test_unregister_keeps_a_newer_waiter_of_the_same_session(redis):
    hub = hub_for(redis)
    old = hub.register("sess_a", "req_1")
    new = hub.register("sess_a", "req_2")
    hub.unregister(old)
    assert hub.waiting == 1 and hub.deliver("sess_a", APPROVE.format(rid="req_2")) and new.decision.done()


async def test_published_signal_reaches_the_waiter(redis):
    hub = hub_for(redis)
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        waiter = hub.register("sess_pub", "req_pub")
        await redis.publish("hitl:channel:sess_pub", APPROVE.format(rid="req_pub"))
        signal = await asyncio.wait_for(waiter.decision, 5)
        assert signal.request_id == "req_pub"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_subscriber_reconnects_after_redis_restart_and_finds_missed_decisions():
    server = RedisServer()
    server.start()
    redis = Redis.from_url(server.url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)
    hub = SignalHub(redis, HitlStore(redis), sweep_seconds=0.2, redis_timeout_seconds=1)
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        waiter = hub.register("sess_r", "req_r")
        server.stop()
        for _ in range(100):
            if not hub.subscribed.is_set():
                break
            await asyncio.sleep(0.05)
        assert not hub.subscribed.is_set()
        server.start()
        # Decided while the subscriber was away: only the key is there, the publish is gone.
        await redis.set("hitl:signal:sess_r", json.dumps({"type": "approval", "requestId": "req_r", "status": "approved"}))
        signal = await asyncio.wait_for(waiter.decision, 10)
        assert signal.decision is Decision.APPROVED
        assert hub.subscribed.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
        server.stop()


async def test_a_failed_sweep_keeps_the_subscription(redis, monkeypatch):
    """Regression: an error in the periodic re-check tore down Pub/Sub, losing approvals published meanwhile."""
    hub = hub_for(redis, sweep=0.05)
    calls = 0
    real = hub._store.decisions_for

    async def flaky(pending):
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionError("injected")
        return await real(pending)

    monkeypatch.setattr(hub._store, "decisions_for", flaky)
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        generation = hub.generation
        waiter = hub.register("sess_f", "req_f")
        while calls <= 3:
            await asyncio.sleep(0.05)
        assert hub.subscribed.is_set() and hub.generation == generation
        assert hub.listened_throughout(waiter)
        await redis.publish("hitl:channel:sess_f", APPROVE.format(rid="req_f"))
        assert (await asyncio.wait_for(waiter.decision, 5)).request_id == "req_f"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_waiter_registered_while_unsubscribed_is_not_listened_throughout(redis):
    hub = hub_for(redis)
    waiter = hub.register("sess_u", "req_u")  # the hub has not subscribed yet
    assert not hub.listened_throughout(waiter)
