"""Leases, snapshots and the instance sets in a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from aura.errors import LeaseLost
from aura.ids import new_session_id
from aura.session.store import SessionStore
from aura.storage import keys
from tests.support.redis_server import close_pubsub

pytestmark = pytest.mark.anyio


def store(redis: Redis, instance: str, lease: float = 30) -> SessionStore:
    return SessionStore(redis, instance, ttl_seconds=1800, max_events=1000, lease_seconds=lease)


async def test_create_holds_the_lease_and_lists_the_session_in_its_instances_set(private_redis: Redis) -> None:
    a, b = store(private_redis, "create-a"), store(private_redis, "b")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid, "state": "planning"})
    assert await b.owners([sid]) == ["create-a"]
    assert await b.sessions_of("create-a", 10) == [sid]
    assert "create-a" in await b.instances()  # findable before its first heartbeat
    snapshot = await b.load(sid)
    assert snapshot is not None and snapshot["state"] == "planning"
    assert 1790 <= await private_redis.ttl(keys.snapshot(sid)) <= 1800
    assert 1790 <= await private_redis.ttl(keys.lease(sid)) <= 1800
    assert 1790 <= await private_redis.ttl(keys.instance_sessions("create-a")) <= 1800


async def test_an_ended_session_leaves_its_instances_set(private_redis: Redis) -> None:
    a = store(private_redis, "set-a")
    sid, other = new_session_id(), new_session_id()
    await a.create(sid, {"sessionId": sid, "seq": "0"})
    await a.create(other, {"sessionId": other, "seq": "0"})
    await a.append(sid, [], {"seq": "0"}, end=True)
    assert await a.sessions_of("set-a", 10) == [other]


async def test_a_create_is_refused_when_a_survivor_took_the_lease_first(private_redis: Redis) -> None:
    """An instance whose heartbeat lapsed must not take back, by creating it, a session a survivor adopted."""
    a = store(private_redis, "a")
    sid = new_session_id()
    await private_redis.set(keys.lease(sid), "survivor")
    with pytest.raises(LeaseLost):
        await a.create(sid, {"sessionId": sid})
    assert await private_redis.get(keys.lease(sid)) == "survivor"


async def test_one_heartbeat_per_instance_says_whether_it_lapsed(private_redis: Redis) -> None:
    a = store(private_redis, "hb-a", lease=0.2)
    assert not await a.heartbeat()  # first beat: nothing was there
    assert await a.heartbeat()
    assert await a.alive({"hb-a", "hb-nobody"}) == {"hb-a"}
    await asyncio.sleep(0.3)
    assert await a.alive({"hb-a"}) == set()
    assert not await a.heartbeat()  # it had lapsed: others may have taken sessions over
    await a.stop_heartbeat()
    assert await a.alive({"hb-a"}) == set()


async def test_take_over_is_a_compare_and_set_on_the_owner(private_redis: Redis) -> None:
    a, b, c = store(private_redis, "a"), store(private_redis, "b"), store(private_redis, "c")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    assert await b.take_over([sid], ["someone-else"]) == [False]
    assert await b.take_over([sid], ["a"]) == [True]
    assert await c.take_over([sid], ["a"]) == [False]  # b was quicker
    assert await b.owners([sid]) == ["b"]


async def test_take_over_of_many_sessions_answers_each_one(private_redis: Redis) -> None:
    a, b = store(private_redis, "a"), store(private_redis, "b")
    mine, theirs, nobodys = new_session_id(), new_session_id(), new_session_id()
    await a.create(mine, {"sessionId": mine})
    await private_redis.set(keys.lease(theirs), "c")
    assert await b.take_over([mine, theirs, nobodys], ["a", "a", None]) == [True, False, True]
    assert await b.owners([mine, theirs, nobodys]) == ["b", "c", "b"]


async def test_release_only_deletes_our_own_lease(private_redis: Redis) -> None:
    a, b = store(private_redis, "a"), store(private_redis, "b")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    await b.release([sid])
    assert await private_redis.get(keys.lease(sid)) == "a"
    await a.release([sid])
    assert await private_redis.get(keys.lease(sid)) is None
    assert await b.take_over([sid], [None]) == [True]


async def test_cancel_request_is_recorded_and_published(private_redis: Redis) -> None:
    a = store(private_redis, "a")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid})
    pubsub = private_redis.pubsub()
    await pubsub.subscribe(keys.cancel_channel(sid))
    await pubsub.get_message(timeout=1)
    await a.request_cancel(sid)
    assert (await pubsub.get_message(timeout=1))["data"] == "1"
    snapshot = await a.load(sid)
    assert snapshot is not None and snapshot["cancelRequested"] == "1"
    await close_pubsub(pubsub)


async def test_an_end_retried_after_its_reply_was_lost_succeeds_once_more(private_redis: Redis) -> None:
    """Regression: the retry of a written end found the lease gone and was reported as LeaseLost."""
    a = store(private_redis, "end-a")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid, "seq": "0"})
    await a.append(sid, [(1, "id: x.1\n\n")], {"seq": "1"})
    await a.append(sid, [], {"seq": "1"}, end=True)
    await a.append(sid, [], {"seq": "1"}, end=True)  # the retry: no LeaseLost, no second end marker
    entries = await private_redis.xrange(keys.events(sid)) or []
    assert [fields for _, fields in entries] == [{"f": "id: x.1\n\n"}, {"end": "1"}]


async def test_an_end_is_still_fenced_by_the_lease_before_it_is_written(private_redis: Redis) -> None:
    a, b = store(private_redis, "end-b"), store(private_redis, "end-c")
    sid = new_session_id()
    await a.create(sid, {"sessionId": sid, "seq": "0"})
    await private_redis.set(keys.lease(sid), "end-c")
    with pytest.raises(LeaseLost):
        await a.append(sid, [], {"seq": "0"}, end=True)
    assert await b.owners([sid]) == ["end-c"]
