"""Following a session's log in Redis: order, wake-ups, end, trimming, and the SSE writer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from aura.storage import keys
from aura.errors import LeaseLost
from aura.http.sse import DONE_FRAME, DRAIN_FRAME, HEARTBEAT_FRAME, feed_frames
from aura.session.events import EventType
from aura.session.notifier import Wakeup
from aura.session.session import Session
from tests.support.redis_server import RedisServer
from tests.support.sessions import Driver, driver_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def new_session(redis: Redis, **kwargs: Any) -> tuple[Session, Driver]:
    driver = driver_for(redis, **kwargs)
    return await driver.create(), driver


def wake_event(d: Driver, session: Session) -> Wakeup | None:
    """The wake-up the session's followers sleep on, if one was taken (looked at without creating one)."""
    return d.notifier.current(session.id)


def followers_waiting(d: Driver, session: Session) -> int:
    """How many readers are blocked on the session's wake-up right now."""
    return d.notifier.followers_waiting(session.id)


async def waiting_followers(d: Driver, session: Session, count: int = 1) -> None:
    await wait_until(lambda: followers_waiting(d, session) >= count, 5,
                     lambda: f"{count} follower(s) waiting on {session.id} (got {followers_waiting(d, session)})")


async def test_events_are_read_back_in_order_from_redis_and_locally(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    for n in range(5):
        d.writer.emit(session, EventType.CONTENT, {"content": str(n)})
    await d.writer.sync(session)
    remote = await d.remote_feed(session).read_after(2, timeout=1)
    local = await d.local_feed(session).read_after(2, timeout=1)
    assert [seq for seq, _ in remote] == [3, 4, 5]
    assert remote == local
    assert json.loads(remote[0][1].split(b"data: ")[1])["data"]["content"] == "2"


async def test_read_after_wakes_every_follower_on_append(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    readers = [asyncio.create_task(d.remote_feed(session).read_after(0, timeout=10)) for _ in range(3)]
    await waiting_followers(d, session, 3)  # all three read the empty log and sleep on the event
    d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    await d.writer.sync(session)
    results = await asyncio.wait_for(asyncio.gather(*readers), 5)  # woken, not timed out after 10 s
    assert all([seq for seq, _ in r] == [1] for r in results)


async def test_a_spurious_wake_does_not_end_the_wait_early(private_redis: Redis) -> None:
    """Regression: a notification for an event already read made the writer send a heartbeat at once."""
    session, d = await new_session(private_redis)
    feed = d.remote_feed(session)
    reader = asyncio.create_task(feed.read_after(0, timeout=10))
    await waiting_followers(d, session)
    first = wake_event(d, session)
    d.notifier.wake(session.id)  # nothing new in the log
    # The reader reads again, finds nothing, and sleeps on a fresh event (or, wrongly, returns).
    await wait_until(lambda: reader.done() or (wake_event(d, session) not in (None, first)
                                               and followers_waiting(d, session) == 1), 5,
                     "the woken reader to wait again")
    assert not reader.done()
    d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    await d.writer.sync(session)
    assert [seq for seq, _ in await asyncio.wait_for(reader, 5)] == [1]


async def test_read_after_times_out_empty(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    assert await d.remote_feed(session).read_after(0, timeout=0.05) == []


async def test_end_marker_closes_the_feed(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    await d.writer.sync(session)
    await d.writer.close(session)
    feed = d.remote_feed(session)
    assert len(await feed.read_after(0, timeout=1)) == 1
    assert await feed.read_after(1, timeout=1) == [] and feed.closed
    assert session.id not in await d.store.sessions_of(d.store.instance_id, 100)


async def test_a_cursor_older_than_the_bounded_log_gets_a_snapshot_first(private_redis: Redis) -> None:
    session, d = await new_session(private_redis, max_events=100)
    for n in range(400):
        d.writer.emit(session, EventType.CONTENT, {"content": str(n)})
    await d.writer.sync(session)
    frames = await d.remote_feed(session).read_after(1, timeout=1)
    first_kept = frames[1][0]
    assert first_kept > 2  # Redis trimmed the start
    assert frames[0][0] == first_kept - 1
    assert b"event: snapshot" in frames[0][1] and f"id: {session.id}.{first_kept - 1}".encode() in frames[0][1]
    view = json.loads(frames[0][1].split(b"data: ")[1])["data"]
    assert view["seq"] == 400 and "authorization" not in view
    assert [seq for seq, _ in frames[1:]] == list(range(first_kept, first_kept + len(frames) - 1))


async def test_appends_are_fenced_by_the_lease(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    await private_redis.set(keys.lease(session.id), "someone-else")
    d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    with pytest.raises(LeaseLost):
        await d.writer.sync(session)
    with pytest.raises(LeaseLost):  # and every later emit says so too
        d.writer.emit(session, EventType.CONTENT, {"content": "y"})
    assert await private_redis.xlen(keys.events(session.id)) == 0


async def test_writer_sends_heartbeats_while_idle_then_events_then_done(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    frames = feed_frames(d.local_feed(session), after_seq=0, heartbeat_seconds=0.05)
    assert await anext(frames) == HEARTBEAT_FRAME
    event = d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    await d.writer.sync(session)
    assert await anext(frames) == event.frame
    await d.writer.close(session)
    assert await anext(frames) == DONE_FRAME
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def anext_frame(frames: AsyncIterator[bytes]) -> bytes:
    return await anext(frames)


async def test_writer_ends_without_done_when_the_server_drains(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    frames = feed_frames(d.remote_feed(session), after_seq=0, heartbeat_seconds=30)
    pending: asyncio.Task[bytes] = asyncio.create_task(anext_frame(frames))
    await waiting_followers(d, session)
    d.notifier.drain()
    assert await asyncio.wait_for(pending, 5) == DRAIN_FRAME  # at once, not at the 30 s heartbeat
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_a_session_that_forgot_its_frames_still_replays_them_from_redis(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    for n in range(3):
        d.writer.emit(session, EventType.CONTENT, {"content": str(n)})
    await d.writer.sync(session)
    d.writer.idle(session)  # what a session does while it waits for approval
    feed = d.local_feed(session)
    assert [seq for seq, _ in await feed.read_after(0, timeout=1)] == [1, 2, 3]
    d.writer.emit(session, EventType.CONTENT, {"content": "after"})
    await d.writer.sync(session)
    assert [seq for seq, _ in await feed.read_after(3, timeout=1)] == [4]
    local = d.replay.after(session.id, 3)
    assert local is not None and [seq for seq, _ in local[0]] == [4]


@pytest.mark.e2e  # starts (and stops) a redis-server of its own
async def test_a_follower_keeps_its_stream_while_redis_is_away() -> None:
    """Regression: a Redis error while reading the log ended the SSE response without [DONE]."""
    server = RedisServer()
    server.start()
    client = Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        session, d = await new_session(client)
        d.writer.emit(session, EventType.CONTENT, {"content": "x"})
        await d.writer.sync(session)
        feed = d.remote_feed(session)
        server.stop()
        assert await feed.read_after(0, timeout=0.1) == [] and not feed.closed  # a heartbeat, not a crash
    finally:
        await client.aclose()
        server.stop()


async def test_a_remote_feed_subscribes_to_its_log_once_and_lets_go_when_closed(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    feed = d.remote_feed(session)
    await feed.read_after(0, timeout=0.01)
    await feed.read_after(0, timeout=0.01)
    assert d.followed.counts == {session.id: 1}
    feed.close()
    feed.close()
    assert d.followed.counts == {}


async def test_a_local_feed_subscribes_to_nothing(private_redis: Redis) -> None:
    session, d = await new_session(private_redis)
    feed = d.local_feed(session)
    await feed.read_after(0, timeout=0.01)
    feed.close()
    assert d.followed.counts == {}


async def test_a_followed_session_that_vanishes_from_redis_ends_with_an_error_not_heartbeats_forever(
    private_redis: Redis,
) -> None:
    """Regression: a remote log whose session expired or was lost with a failed-over primary kept its
    stream open on heartbeats, without [DONE], until the gateway gave up."""
    session, d = await new_session(private_redis)
    d.writer.emit(session, EventType.CONTENT, {"content": "x"})
    await d.writer.sync(session)
    out = feed_frames(d.remote_feed(session), after_seq=0, heartbeat_seconds=0.05)
    assert b"event: content" in await anext(out)
    assert await anext(out) == HEARTBEAT_FRAME  # still there: it may yet grow
    await private_redis.delete(keys.snapshot(session.id), keys.events(session.id))
    rest = [frame async for frame in out]
    assert rest[-1] == DONE_FRAME and HEARTBEAT_FRAME not in rest[-2:]
    [explanation] = [frame for frame in rest if b"event: content" in frame]
    [error] = [frame for frame in rest if b"event: error" in frame]
    # The explanation first (CONTRACT §3.8), then the error: both in no log, numbered after what it had.
    assert f"id: {session.id}.2".encode() in explanation and b"Redis no longer holds it" in explanation
    assert b'"errorType":"SessionLostError"' in error and f"id: {session.id}.3".encode() in error
    assert rest.index(explanation) + 1 == rest.index(error)
