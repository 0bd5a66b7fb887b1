"""The session feed: numbering, replay and waking followers."""

from __future__ import annotations

import asyncio

import pytest

from aura.events import EventType
from aura.feed import SessionFeed
from aura.ids import new_session_id
from aura.sse import DONE_FRAME, HEARTBEAT_FRAME, feed_frames

pytestmark = pytest.mark.anyio


async def test_events_are_numbered_from_one_and_replayed_after_a_cursor():
    feed = SessionFeed(new_session_id())
    for n in range(5):
        feed.append(EventType.CONTENT, {"content": str(n)})
    assert [e.seq for e in feed.events_after(0)] == [1, 2, 3, 4, 5]
    assert [e.data["content"] for e in feed.events_after(3)] == ["3", "4"]
    assert feed.events_after(99) == []


async def test_read_after_wakes_every_follower_on_append():
    feed = SessionFeed(new_session_id())
    readers = [asyncio.create_task(feed.read_after(0, timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)
    feed.append(EventType.CONTENT, {"content": "x"})
    results = await asyncio.gather(*readers)
    assert all([e.seq for e in r] == [1] for r in results)


async def test_read_after_times_out_empty():
    feed = SessionFeed(new_session_id())
    assert await feed.read_after(0, timeout=0.01) == []


async def test_closed_feed_refuses_appends():
    feed = SessionFeed(new_session_id())
    feed.close()
    with pytest.raises(RuntimeError):
        feed.append(EventType.CONTENT, {})


async def test_writer_sends_heartbeats_while_idle_then_events_then_done():
    feed = SessionFeed(new_session_id())
    frames = feed_frames(feed, after_seq=0, heartbeat_seconds=0.01)
    assert await anext(frames) == HEARTBEAT_FRAME
    event = feed.append(EventType.CONTENT, {"content": "x"})
    feed.close()
    assert await anext(frames) == event.frame
    assert await anext(frames) == DONE_FRAME
    with pytest.raises(StopAsyncIteration):
        await anext(frames)
