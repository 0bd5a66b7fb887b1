"""The process-wide HITL subscriber: matching, tolerance and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from aura.config import Settings
from aura.hitl.hub import ApprovalWaiter, SignalHub
from aura.hitl.signals import Decision, Signal
from aura.hitl.store import HitlStore
from aura.storage.clients import connect
from tests.support.auth import SECRET
from tests.support.redis_server import RedisServer
from tests.support.waiting import cancel_and_wait, wait_until

pytestmark = pytest.mark.anyio

APPROVE = '{{"type":"approval","requestId":"{rid}","status":"approved","timestamp":1}}'
LONG_SWEEP = 60.0  # the periodic sweep never runs within a test: only the re-read on (re)subscribe can


def hub_for(redis: Redis, sweep: float = LONG_SWEEP) -> SignalHub:
    return SignalHub(redis, HitlStore(redis), sweep_seconds=sweep, redis_timeout_seconds=2)


def offline_hub() -> SignalHub:
    """A hub that never runs: a client that is never used opens no connection, so no Redis is needed."""
    return hub_for(Redis.from_url("redis://127.0.0.1:1/0"))


def ids() -> tuple[str, str]:
    """A session and request of the test's own: the shared Redis keeps other tests' keys."""
    return f"sess_{uuid.uuid4().hex[:24]}", f"req_{uuid.uuid4().hex[:24]}"


@contextlib.asynccontextmanager
async def running(hub: SignalHub) -> AsyncIterator[SignalHub]:
    task = asyncio.create_task(hub.run())
    try:
        yield hub
    finally:
        await cancel_and_wait(task)  # not a bare cancel + await: see the xfail test at the end


async def decided_without_publish(redis: Redis, session_id: str, request_id: str, where: str) -> None:
    """main-service's writes of an approval, minus the PUBLISH (CONTRACT §4.2-4.3)."""
    if where in ("signal", "both"):
        signal = Signal(request_id, Decision.APPROVED, timestamp=int(time.time()))
        await redis.set(f"hitl:signal:{session_id}", signal.to_json(), ex=300)
    if where in ("record", "both"):
        record = {"requestId": request_id, "sessionId": session_id, "userId": "1", "tenantId": "1",
                  "actionType": "send_email", "status": "approved", "approvedBy": "1",
                  "approvedAt": int(time.time() * 1000)}
        await redis.set(f"hitl:request:{request_id}", json.dumps(record), ex=1800)


async def pending_request(redis: Redis, session_id: str, request_id: str) -> None:
    """The record Aura writes when it asks (CONTRACT §4.2), still pending."""
    await HitlStore(redis).create_request({"requestId": request_id, "sessionId": session_id, "userId": "1",
                                           "tenantId": "1", "actionType": "send_email", "context": {},
                                           "status": "pending", "createdAt": int(time.time() * 1000)})


async def resolved(waiter: ApprovalWaiter, within: float = 3.0) -> Signal:
    return await asyncio.wait_for(asyncio.shield(waiter.decision), within)


async def test_a_message_wakes_only_the_session_of_its_channel(redis: Redis) -> None:
    session_id, request_id = ids()
    await decided_without_publish(redis, session_id, request_id, "record")
    hub = hub_for(redis)
    waiter = hub.register(session_id, request_id)
    assert not hub.deliver("sess_unknown", APPROVE.format(rid=request_id))  # nobody waits on that channel
    assert not waiter.decision.done() and hub.ignored_signals == 1
    assert hub.deliver(session_id, "garbage")  # whatever it says, it wakes; the record decides
    assert (await resolved(waiter)).decision is Decision.APPROVED
    assert not hub.deliver(session_id, APPROVE.format(rid=request_id))  # a duplicate: decided already
    assert hub.ignored_signals == 2
    hub.unregister(waiter)
    assert hub.waiting == 0


async def test_unregister_keeps_a_newer_waiter_of_the_same_session(redis: Redis) -> None:
    session_id, old_request = ids()
    new_request = ids()[1]
    await decided_without_publish(redis, session_id, new_request, "record")
    hub = hub_for(redis)
    old = hub.register(session_id, old_request)
    new = hub.register(session_id, new_request)
    hub.unregister(old)
    assert hub.waiting == 1 and hub.deliver(session_id, APPROVE.format(rid=new_request))
    assert (await resolved(new)).request_id == new_request


async def test_a_published_signal_wakes_the_waiter_which_reads_the_decision_on_its_record(redis: Redis) -> None:
    session_id, request_id = ids()
    hub = hub_for(redis)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        waiter = hub.register(session_id, request_id)
        await decided_without_publish(redis, session_id, request_id, "both")  # main-service: the record first
        await redis.publish(f"hitl:channel:{session_id}", APPROVE.format(rid=request_id))
        signal = await resolved(waiter, 5)
        assert signal.request_id == request_id and signal.decision is Decision.APPROVED


async def test_a_bare_publish_does_not_decide_while_the_request_is_pending(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 item 7: PUBLISH hitl:channel:{sid} of an approval, with hitl:request still pending, ran
    the tool. It is a wake-up: the session reads its record, finds it pending, and keeps waiting."""
    session_id, request_id = ids()
    await pending_request(redis, session_id, request_id)
    hub = hub_for(redis)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        waiter = hub.register(session_id, request_id)
        await redis.set(f"hitl:signal:{session_id}", APPROVE.format(rid=request_id), ex=300)  # even with the key
        assert await redis.publish(f"hitl:channel:{session_id}", APPROVE.format(rid=request_id)) >= 1
        await wait_until(lambda: hub.unconfirmed_wakeups == 1, 5, "the woken session to read its record")
        assert not waiter.decision.done()
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and request_id in r.getMessage()]
        assert "announced approved" in warning.getMessage()  # the claim the record lacks is logged

        # A human approves, as Aura's API does: the record, then the signal, then the PUBLISH.
        result = await HitlStore(redis).decide(request_id, Decision.APPROVED, actor="1", tenant="1")
        assert result.status == "approved"
        assert (await resolved(waiter)).decision is Decision.APPROVED


async def test_a_record_of_another_session_decides_nothing(redis: Redis) -> None:
    session_id, request_id = ids()
    await decided_without_publish(redis, f"sess_{uuid.uuid4().hex[:24]}", request_id, "record")
    hub = hub_for(redis)
    waiter = hub.register(session_id, request_id)
    assert hub.deliver(session_id, APPROVE.format(rid=request_id))
    await wait_until(lambda: not hub.reading, 5, "the woken session to read its record")
    await hub.recheck()
    assert not waiter.decision.done() and hub.unconfirmed_wakeups == 1


@pytest.mark.parametrize("where", ["record", "both"])
async def test_a_decision_made_before_the_hub_subscribed_is_read_right_after_subscribing(
    redis: Redis, where: str
) -> None:
    """CONTRACT §4.3: Pub/Sub is at-most-once; what was decided before the subscription exists is
    found by the re-read after subscribing, not seconds later by the periodic sweep."""
    session_id, request_id = ids()
    await decided_without_publish(redis, session_id, request_id, where)
    hub = hub_for(redis, sweep=LONG_SWEEP)
    waiter = hub.register(session_id, request_id)  # registered while the hub is not listening yet
    async with running(hub):
        signal = await resolved(waiter)
    assert signal.request_id == request_id and signal.decision is Decision.APPROVED


async def test_a_signal_key_without_a_decided_record_decides_nothing(redis: Redis) -> None:
    """Issue 10: hitl:signal:{sid} is a wake-up too; only hitl:request decides (main-service writes it first)."""
    session_id, request_id = ids()
    await pending_request(redis, session_id, request_id)
    await decided_without_publish(redis, session_id, request_id, "signal")
    hub = hub_for(redis, sweep=LONG_SWEEP)
    waiter = hub.register(session_id, request_id)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        await hub.recheck()
        assert not waiter.decision.done()


async def test_a_decision_for_another_request_is_not_read_as_this_ones(redis: Redis) -> None:
    session_id, request_id = ids()
    await decided_without_publish(redis, session_id, "req_" + "0" * 24, "signal")  # an older request's
    hub = hub_for(redis, sweep=LONG_SWEEP)
    waiter = hub.register(session_id, request_id)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        await hub.recheck()  # what the re-read after subscribing did, once more: still nothing
        assert not waiter.decision.done()


class HeldSubscriptions:
    """Makes the hub's own (re)subscriptions wait while ``go`` is clear: the test decides meanwhile.

    Only the first subscribe of a fresh PubSub waits; redis-py's resubscribe inside a reconnect
    (the same PubSub, already connected once) must not, or the loss would never surface.
    """

    def __init__(self, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.go = asyncio.Event()
        self.go.set()
        self.attempts = 0
        make_pubsub: Callable[..., PubSub] = redis.pubsub

        def pubsub(**kwargs: Any) -> PubSub:
            pubsub = make_pubsub(**kwargs)
            subscribe = pubsub.psubscribe

            async def psubscribe(*args: Any, **kw: Any) -> Any:
                if pubsub.connection is None:
                    self.attempts += 1
                    await self.go.wait()
                return await subscribe(*args, **kw)

            monkeypatch.setattr(pubsub, "psubscribe", psubscribe)
            return pubsub

        monkeypatch.setattr(redis, "pubsub", pubsub)


async def test_a_decision_made_while_the_subscription_was_killed_is_read_on_resubscribe(
    private_redis_server: RedisServer, private_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Redis drops the Pub/Sub connection (CLIENT KILL TYPE pubsub), an approval written
    meanwhile, without a PUBLISH the hub could hear, is found right after it resubscribes."""
    clients = connect(Settings(jwt_secret=SECRET, redis_url=private_redis_server.url, redis_timeout_seconds=2))
    held = HeldSubscriptions(clients.subscriber, monkeypatch)  # the production subscriber client, held
    hub = SignalHub(clients.subscriber, HitlStore(clients.commands), sweep_seconds=LONG_SWEEP, redis_timeout_seconds=2)
    session_id, request_id = ids()
    try:
        async with running(hub):
            await asyncio.wait_for(hub.subscribed.wait(), 5)
            waiter = hub.register(session_id, request_id)
            assert hub.listened_throughout(waiter)
            lost_at = hub.generation

            held.go.clear()  # the next subscription waits until the decision is in Redis
            attempts = held.attempts
            assert await private_redis.client_kill_filter(_type="pubsub") >= 1
            await wait_until(lambda: not hub.subscribed.is_set(), 5, "the hub to notice the killed connection")
            assert not hub.listened_throughout(waiter)
            await decided_without_publish(private_redis, session_id, request_id, "both")
            await wait_until(lambda: held.attempts > attempts, 5, "the hub to try to subscribe again")
            assert not waiter.decision.done()  # nothing could tell the hub yet

            held.go.set()
            signal = await resolved(waiter)
            assert signal.request_id == request_id and signal.decision is Decision.APPROVED
            assert hub.subscribed.is_set() and hub.generation > lost_at
    finally:
        await clients.aclose()


@pytest.mark.e2e  # starts a redis-server of its own
async def test_subscriber_reconnects_after_redis_restart_and_finds_missed_decisions() -> None:
    server = RedisServer()
    server.start()
    redis = Redis.from_url(server.url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)
    hub = SignalHub(redis, HitlStore(redis), sweep_seconds=0.2, redis_timeout_seconds=1)
    try:
        async with running(hub):
            await asyncio.wait_for(hub.subscribed.wait(), 5)
            waiter = hub.register("sess_r", "req_r")
            server.stop()
            await wait_until(lambda: not hub.subscribed.is_set(), 5, "the hub to notice Redis is gone")
            server.start()
            # Decided while the subscriber was away: only the keys are there, the publish is gone.
            await decided_without_publish(redis, "sess_r", "req_r", "both")
            signal = await asyncio.wait_for(waiter.decision, 10)
            assert signal.decision is Decision.APPROVED
            assert hub.subscribed.is_set()
    finally:
        await redis.aclose()
        server.stop()


async def test_a_failed_sweep_keeps_the_subscription(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: an error in the periodic re-check tore down Pub/Sub, losing approvals published meanwhile."""
    store = HitlStore(redis)
    hub = SignalHub(redis, store, sweep_seconds=0.05, redis_timeout_seconds=2)
    calls = 0
    real = store.decisions_for

    async def flaky(pending: list[tuple[str, str]]) -> list[Signal | None]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionError("injected")
        return await real(pending)

    monkeypatch.setattr(store, "decisions_for", flaky)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        generation = hub.generation
        waiter = hub.register("sess_f", "req_f")
        await wait_until(lambda: calls > 3, 10, "three failed sweeps")
        assert hub.subscribed.is_set() and hub.generation == generation
        assert hub.listened_throughout(waiter)
        await decided_without_publish(redis, "sess_f", "req_f", "record")  # main-service: the record first
        await redis.publish("hitl:channel:sess_f", APPROVE.format(rid="req_f"))
        assert (await asyncio.wait_for(waiter.decision, 5)).request_id == "req_f"


async def test_a_waiter_registered_while_unsubscribed_is_not_listened_throughout() -> None:
    hub = offline_hub()
    waiter = hub.register("sess_u", "req_u")  # the hub has not subscribed yet
    assert not hub.listened_throughout(waiter)


class SwallowingSource:
    """A DecisionSource whose re-read ends the way redis-py's command sends can on Python 3.11:
    the reply arrives in the same loop turn as a cancel, and ``asyncio.wait_for`` (which
    redis-py wraps every send in) returns the reply instead of raising CancelledError."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.reply: asyncio.Future[list[Signal | None]] | None = None

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.reply = asyncio.get_running_loop().create_future()
        self.reading.set()
        return await asyncio.wait_for(self.reply, 5)


async def test_the_hub_stops_on_one_cancel_even_if_a_redis_call_swallowed_it(redis: Redis) -> None:
    source = SwallowingSource()
    hub = SignalHub(redis, source, sweep_seconds=LONG_SWEEP, redis_timeout_seconds=2)
    hub.register(*ids())  # a waiter, so the re-read after subscribing asks the source
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(source.reading.wait(), 5)
        assert source.reply is not None
        source.reply.set_result([None])  # the reply and the cancel land in the same loop turn
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
        assert task in done, "the hub kept running after it was cancelled"
    finally:
        await cancel_and_wait(task)


async def get_calls(redis: Redis) -> int:
    """How many GETs the server has run since the last CONFIG RESETSTAT."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_the_sweep_reads_only_approval_requests(private_redis: Redis) -> None:
    """Issue 10: the sweep reads hitl:request:{rid} of each waiting session and not hitl:signal:{sid}
    as well: one GET per session, half of what it sent, and a signal key alone decides nothing."""
    hub = hub_for(private_redis)
    waiters = []
    for n in range(6):
        session_id, request_id = ids()
        if n % 2:
            await decided_without_publish(private_redis, session_id, request_id, "both")
        else:  # a signal that says approved, a record that says pending
            await pending_request(private_redis, session_id, request_id)
            await decided_without_publish(private_redis, session_id, request_id, "signal")
        waiters.append(hub.register(session_id, request_id))
    await private_redis.config_resetstat()
    await hub.recheck()
    assert await get_calls(private_redis) == len(waiters)
    assert [w.decision.done() for w in waiters] == [False, True] * 3


async def test_a_poisoned_record_never_approves_and_does_not_stop_the_sweep_for_the_others(
    private_redis_server: RedisServer, private_redis: Redis
) -> None:
    """Per entry: a record that is not UTF-8 (which made redis-py fail the whole pipeline), nested too
    deep, not an object, or with a status of the wrong JSON type, is corrupt: logged, and waits."""
    raw = Redis.from_url(private_redis_server.url)  # writes bytes as they are
    hub = hub_for(private_redis)
    poisoned: list[ApprovalWaiter] = []
    try:
        for value in (b"\xff\xfe{\"status\":\"approved\"}", b"[" * 100_000 + b"]" * 100_000, b'"approved"',
                      b"not json"):
            session_id, request_id = ids()
            await raw.set(f"hitl:request:{request_id}", value)
            poisoned.append(hub.register(session_id, request_id))
        for status in (["approved"], {"s": "approved"}, 1, True):
            session_id, request_id = ids()
            record = {"requestId": request_id, "sessionId": session_id, "tenantId": "1", "status": status}
            await raw.set(f"hitl:request:{request_id}", json.dumps(record))
            poisoned.append(hub.register(session_id, request_id))
        fine_session, fine_request = ids()
        await decided_without_publish(private_redis, fine_session, fine_request, "record")
        fine = hub.register(fine_session, fine_request)

        await hub.recheck()  # the sweep's read: no exception
        assert (await resolved(fine)).decision is Decision.APPROVED
        assert not any(w.decision.done() for w in poisoned)
        for waiter in poisoned:  # and the wake-up's read
            assert hub.deliver(waiter.session_id, APPROVE.format(rid=waiter.request_id))
        await wait_until(lambda: not hub.reading, 5, "the woken sessions to read their records")
        assert not any(w.decision.done() for w in poisoned)
        assert hub.unconfirmed_wakeups == len(poisoned)
    finally:
        await raw.aclose()
