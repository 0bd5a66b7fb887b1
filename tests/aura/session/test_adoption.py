"""Adoption from a snapshot left by a driver that died at an awkward moment."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from aura.agent.planner import RuleBasedPlanner
from aura.session import events
from aura.session.events import EventType
from aura.session.session import Session
from aura.storage import keys
from statemachines import Trigger
from tests.conftest import auth_headers
from tests.support.live_server import LiveServer
from tests.support.redis_server import RedisServer
from tests.support.sessions import Driver, driver_for
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.anyio


async def orphan(redis: Redis, prompt: str) -> tuple[Session, Driver]:
    """A session written by an instance that then vanished (its lease deleted, as if it lapsed)."""
    driver = driver_for(redis, "dead-instance", max_events=1000)
    return await driver.create(prompt), driver


async def abandon(redis: Redis, driver: Driver, session: Session) -> None:
    """The orphan's driver goes away. Start the adopting server only after this: a round between the
    orphan's creation and here would take the lease that this deletes, and nobody would drive it."""
    await driver.writer.sync(session)
    await redis.delete(keys.lease(session.id))


async def final_log(server: LiveServer, session_id: str) -> list[Frame]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        headers = {**auth_headers(), "Accept": "text/event-stream"}
        async with client.stream("GET", f"/aura/sessions/{session_id}/events", headers=headers) as response:
            assert response.status_code == 200
            return await SseStream(response).rest(timeout=20)


async def test_a_driver_that_died_mid_planning_is_replanned_not_failed(
    start_server: Callable[..., LiveServer], private_redis_server: RedisServer, private_redis: Redis
) -> None:
    """Regression: a session adopted in `planning` with a stored plan fired request_approval from planning."""
    session, d = await orphan(private_redis, "Summarize today's open tasks")
    session.set_plan(await RuleBasedPlanner().plan("Summarize today's open tasks", {}))
    d.writer.emit(session, EventType.THOUGHT, {"content": "half a plan", "thoughtType": "planning"})
    await abandon(private_redis, d, session)
    server = start_server(lease_seconds=0.6, redis_url=private_redis_server.url)
    frames = await final_log(server, session.id)
    states = [f.body["to"] for f in frames if f.type == "state"]
    assert states == ["executing", "done"], [f.type for f in frames]
    assert [int(f.id.rsplit(".", 1)[1]) for f in frames if f.id] == list(range(1, len(frames)))


async def test_a_tool_that_was_running_when_the_driver_died_is_reported_not_rerun(
    start_server: Callable[..., LiveServer], private_redis_server: RedisServer, private_redis: Redis
) -> None:
    tenant_outbox = "aura:outbox:1"
    before = await private_redis.llen(tenant_outbox)
    session, d = await orphan(private_redis, "Send an email to kim@example.com saying hi")
    session.set_plan(await RuleBasedPlanner().plan("Send an email to kim@example.com saying hi", {}))
    await session.model.fire(Trigger.START_EXECUTION)
    d.writer.emit_all(session, session.take_transition_events())
    session.record_outcome("step-1", None)
    assert session.plan is not None
    session.begin_tool(session.plan.steps[1])
    d.writer.emit(session, *events.tool_execution(session.plan.steps[1], "executing"))
    await abandon(private_redis, d, session)
    server = start_server(lease_seconds=0.6, redis_url=private_redis_server.url)
    started = time.monotonic()
    frames = await final_log(server, session.id)
    assert time.monotonic() - started < 15
    failed = [f for f in frames if f.type == "tool_execution" and f.body["status"] == "failed"]
    assert len(failed) == 1 and failed[0].body["error"].startswith("interrupted")
    assert [f.body for f in frames if f.type == "state"][-1]["reason"] == "failed"
    assert await private_redis.llen(tenant_outbox) == before  # the email was not sent by the adopter


async def test_an_unreadable_snapshot_does_not_block_adopting_the_others(
    start_server: Callable[..., LiveServer], private_redis_server: RedisServer, private_redis: Redis
) -> None:
    """Regression: one live entry with a broken snapshot crashed every adoption round."""
    broken = "sess_broken000000000000000000"
    await private_redis.hset(keys.snapshot(broken), mapping={"sessionId": "x", "state": "bogus"})
    await private_redis.sadd(keys.instance_sessions("dead-instance"), broken)
    session, d = await orphan(private_redis, "hello")
    await abandon(private_redis, d, session)
    server = start_server(lease_seconds=0.6, redis_url=private_redis_server.url)
    frames = await final_log(server, session.id)
    assert [f.body["to"] for f in frames if f.type == "state"][-1] == "done"
    assert not await private_redis.sismember(keys.instance_sessions("dead-instance"), broken)
