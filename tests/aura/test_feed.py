"""Following a session's log in Redis: order, wake-ups, end, trimming, and the SSE writer."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from aura.auth import Principal
from aura.errors import LeaseLost
from aura.events import EventType
from aura.feed import Notifier, SessionFeed
from aura.session import Session, SessionRegistry, SessionRequest
from aura.session_store import SessionStore
from aura.sse import DONE_FRAME, DRAIN_FRAME, HEARTBEAT_FRAME, feed_frames
from statemachines import SessionMachine
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def store_for(redis, instance: str = "test-a", max_events: int = 10_000) -> SessionStore:
    return SessionStore(redis, instance, ttl_seconds=1800, max_events=max_events, lease_seconds=30)


async def new_session(redis, **kwargs) -> tuple[Session, SessionStore, Notifier, SessionRegistry]:
    store, notifier = store_for(redis, **kwargs), Notifier()
    registry = SessionRegistry(SessionMachine(), store, notifier)
    session = await registry.create(Principal("1", "1"), SessionRequest("hi", {}))
    return session, store, notifier, registry


def remote_feed(session: Session, store: SessionStore, notifier: Notifier) -> SessionFeed:
    """A follower on another replica: nothing local, everything from Redis."""
    return SessionFeed(session.id, store, notifier, lambda _: None)


async def test_events_are_read_back_in_order_from_redis_and_locally(private_redis):
    session, store, notifier, registry = await new_session(private_redis)
    for n in range(5):
        session.emit(EventType.CONTENT, {"content": str(n)})
    await session.sync()
    remote = await remote_feed(session, store, notifier).read_after(2, timeout=1)
    local = await SessionFeed(session.id, store, notifier, registry.local).read_after(2, timeout=1)
    assert [seq for seq, _ in remote] == [3, 4, 5]
    assert remote == local
    assert json.loads(remote[0][1].split(b"data: ")[1])["data"]["content"] == "2"


async def test_read_after_wakes_every_follower_on_append(private_redis):
    session, store, notifier, _ = await new_session(private_redis)
    readers = [asyncio.create_task(remote_feed(session, store, notifier).read_after(0, timeout=5)) for _ in range(3)]
    await asyncio.sleep(0.05)
    session.emit(EventType.CONTENT, {"content": "x"})
    await session.sync()
    results = await asyncio.wait_for(asyncio.gather(*readers), 2)
    assert all([seq for seq, _ in r] == [1] for r in results)


async def test_a_spurious_wake_does_not_end_the_wait_early(private_redis):
    """Regression: a notification for an event already read made the writer send a heartbeat at once."""
    session, store, notifier, _ = await new_session(private_redis)
    feed = remote_feed(session, store, notifier)
    reader = asyncio.create_task(feed.read_after(0, timeout=0.5))
    await asyncio.sleep(0.05)
    notifier.wake(session.id)  # nothing new in the log
    await asyncio.sleep(0.05)
    assert not reader.done()
    session.emit(EventType.CONTENT, {"content": "x"})
    await session.sync()
    assert [seq for seq, _ in await asyncio.wait_for(reader, 1)] == [1]


async def test_read_after_times_out_empty(private_redis):
    session, store, notifier, _ = await new_session(private_redis)
    assert await remote_feed(session, store, notifier).read_after(0, timeout=0.05) == []


async def test_end_marker_closes_the_feed(private_redis):
    session, store, notifier, _ = await new_session(private_redis)
    session.emit(EventType.CONTENT, {"content": "x"})
    await session.sync()
    await session.close()
    feed = remote_feed(session, store, notifier)
    assert len(await feed.read_after(0, timeout=1)) == 1
    assert await feed.read_after(1, timeout=1) == [] and feed.closed
    assert session.id not in await store.live_sessions()


async def test_a_cursor_older_than_the_bounded_log_gets_a_snapshot_first(private_redis):
    session, store, notifier, _ = await new_session(private_redis, max_events=100)
    for n in range(400):
        session.emit(EventType.CONTENT, {"content": str(n)})
    await session.sync()
    frames = await remote_feed(session, store, notifier).read_after(1, timeout=1)
    first_kept = frames[1][0]
    assert first_kept > 2  # Redis trimmed the start
    assert frames[0][0] == first_kept - 1
    assert b"event: snapshot" in frames[0][1] and f"id: {session.id}.{first_kept - 1}".encode() in frames[0][1]
    view = json.loads(frames[0][1].split(b"data: ")[1])["data"]
    assert view["seq"] == 400 and "authorization" not in view
    assert [seq for seq, _ in frames[1:]] == list(range(first_kept, first_kept + len(frames) - 1))


async def test_appends_are_fenced_by_the_lease(private_redis):
    session, store, _, _ = await new_session(private_redis)
    await private_redis.set(f"aura:session:{session.id}:lease", "someone-else")
    session.emit(EventType.CONTENT, {"content": "x"})
    with pytest.raises(LeaseLost):
        await session.sync()
    with pytest.raises(LeaseLost):  # and every later emit says so too
        session.emit(EventType.CONTENT, {"content": "y"})
    assert await private_redis.xlen(f"aura:session:{session.id}:events") == 0


async def test_writer_sends_heartbeats_while_idle_then_events_then_done(private_redis):
    session, store, notifier, registry = await new_session(private_redis)
    frames = feed_frames(SessionFeed(session.id, store, notifier, registry.local), after_seq=0, heartbeat_seconds=0.05)
    assert await anext(frames) == HEARTBEAT_FRAME
    event = session.emit(EventType.CONTENT, {"content": "x"})
    await session.sync()
    assert await anext(frames) == event.frame
    await session.close()
    assert await anext(frames) == DONE_FRAME
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_writer_ends_without_done_when_the_server_drains(private_redis):
    session, store, notifier, _ = await new_session(private_redis)
    frames = feed_frames(remote_feed(session, store, notifier), after_seq=0, heartbeat_seconds=5)
    pending = asyncio.create_task(anext(frames))
    await asyncio.sleep(0.05)
    notifier.drain()
    assert await asyncio.wait_for(pending, 1) == DRAIN_FRAME
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_a_session_that_forgot_its_frames_still_replays_them_from_redis(private_redis):
    session, store, notifier, registry = await new_session(private_redis)
    for n in range(3):
        session.emit(EventType.CONTENT, {"content": str(n)})
    await session.sync()
    session.forget_frames()  # what a session does while it waits for approval
    feed = SessionFeed(session.id, store, notifier, registry.local)
    assert [seq for seq, _ in await feed.read_after(0, timeout=1)] == [1, 2, 3]
    session.emit(EventType.CONTENT, {"content": "after"})
    await session.sync()
    assert [seq for seq, _ in await feed.read_after(3, timeout=1)] == [4]
    assert session.frames_after(3) == [(4, session.frames[0][1])]


async def test_a_follower_keeps_its_stream_while_redis_is_away():
    """Regression: a Redis error while reading the log ended the SSE response without [DONE]."""
    server = RedisServer()
    server.start()
    client = Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        session, store, notifier, _ = await new_session(client)
        session.emit(EventType.CONTENT, {"content": "x"})
        await session.sync()
        feed = remote_feed(session, store, notifier)
        server.stop()
        assert await feed.read_after(0, timeout=0.1) == [] and not feed.closed  # a heartbeat, not a crash
    finally:
        await client.aclose()
        server.stop()
