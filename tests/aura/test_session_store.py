"""Leases, snapshots and the live set in a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from aura.ids import new_session_id
from aura.session_store import SessionStore

pytestmark = pytest.mark.anyio


def store(redis, instance: str, lease: float = 30) -> SessionStore:
    return SessionStore(redis, instance, ttl_seconds=1800, max_events=1000, lease_seconds=lease)


async def test_create_holds_the_lease_and_lists_the_session_as_live(redis):
    a, b = store(redis, "a"), store(redis, "b")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid, "state": "planning"})
    assert await redis.get(f"aura:session:{sid}:lease") == "a"
    assert sid in await b.live_sessions()
    assert not await b.acquire(sid)
    assert (await b.load(sid))["state"] == "planning"
    assert 1790 <= await redis.ttl(f"aura:session:{sid}") <= 1800


async def test_renew_keeps_ours_retakes_a_lapsed_one_and_refuses_anothers(redis):
    a, b = store(redis, "a", lease=0.2), store(redis, "b", lease=0.2)
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    assert await a.renew(sid)
    await asyncio.sleep(0.3)  # lapsed: nobody took it, so it is ours again
    assert await a.renew(sid)
    await redis.delete(f"aura:session:{sid}:lease")
    assert await b.acquire(sid)
    assert not await a.renew(sid)
    assert await redis.get(f"aura:session:{sid}:lease") == "b"


async def test_release_only_deletes_our_own_lease(redis):
    a, b = store(redis, "a"), store(redis, "b")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    await b.release(sid)
    assert await redis.get(f"aura:session:{sid}:lease") == "a"
    await a.release(sid)
    assert await redis.get(f"aura:session:{sid}:lease") is None


async def test_cancel_request_is_recorded_and_published(redis):
    a = store(redis, "a")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"aura:cancel:{sid}")
    await pubsub.get_message(timeout=1)
    await a.request_cancel(sid)
    assert (await pubsub.get_message(timeout=1))["data"] == "1"
    assert (await a.load(sid))["cancelRequested"] == "1"
    await pubsub.aclose()
