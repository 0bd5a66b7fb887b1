"""Replica acknowledgements before a side effect: ReplicaAcks over a scripted store, and the real
``SessionStore.replicate`` (WAIT) on a lone redis-server, which has no replica."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aura.errors import NotReplicated, StoreUnavailable
from aura.ids import new_session_id
from aura.session.replication import ReplicaAcks
from aura.storage import keys
from tests.support.sessions import store_for

pytestmark = pytest.mark.anyio

SID = "sess_replication0000000000000"


@dataclass
class FakeReplicatingStore:
    """A ReplicatingStore that answers ``acknowledged`` after ``delay`` s, hangs, or fails."""

    acknowledged: int = 0
    delay: float = 0.0
    hang: bool = False
    error: BaseException | None = None
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    async def replicate(self, session_id: str, replicas: int, timeout_ms: int) -> int:
        self.calls.append((session_id, replicas, timeout_ms))
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.acknowledged


def acks(store: FakeReplicatingStore, replicas: int, *, timeout: float = 0.5, redis_timeout: float = 1.0) -> ReplicaAcks:
    return ReplicaAcks(store, replicas, timeout_seconds=timeout, redis_timeout_seconds=redis_timeout)


async def test_no_replica_required_never_asks_the_store() -> None:
    store = FakeReplicatingStore(hang=True)  # would hang the test if it were asked

    async with asyncio.timeout(1):
        await acks(store, 0).confirm(SID)

    assert store.calls == []


@pytest.mark.parametrize(("required", "acknowledged"), [(1, 1), (2, 2), (1, 3)])
async def test_enough_acknowledgements_return(required: int, acknowledged: int) -> None:
    store = FakeReplicatingStore(acknowledged=acknowledged)

    await acks(store, required, timeout=0.25).confirm(SID)

    assert store.calls == [(SID, required, 250)]  # the session, how many, WAIT's own timeout in ms


@pytest.mark.parametrize(("required", "acknowledged"), [(1, 0), (2, 1), (3, 0)])
async def test_too_few_acknowledgements_are_a_store_unavailable_caused_by_not_replicated(
    required: int, acknowledged: int
) -> None:
    store = FakeReplicatingStore(acknowledged=acknowledged)

    with pytest.raises(StoreUnavailable) as raised:
        await acks(store, required).confirm(SID)

    cause = raised.value.cause
    assert isinstance(cause, NotReplicated)
    assert (cause.session_id, cause.acknowledged, cause.required) == (SID, acknowledged, required)
    assert raised.value.__cause__ is cause
    assert raised.value.operation == "replicate"
    assert str(cause) == f"{acknowledged} of {required} required Redis replica(s) acknowledged the write"


async def test_the_message_for_one_missing_replica() -> None:
    with pytest.raises(StoreUnavailable) as raised:
        await acks(FakeReplicatingStore(acknowledged=0), 1).confirm(SID)

    assert str(raised.value.cause) == "0 of 1 required Redis replica(s) acknowledged the write"
    assert raised.value.status == 503


async def test_a_tiny_timeout_still_asks_wait_for_at_least_a_millisecond() -> None:
    store = FakeReplicatingStore(acknowledged=1)

    await acks(store, 1, timeout=0.0001).confirm(SID)

    assert store.calls == [(SID, 1, 1)]  # WAIT 1 0 would wait for ever


async def test_a_store_that_hangs_is_unavailable_after_the_wait_plus_the_round_trip() -> None:
    store = FakeReplicatingStore(hang=True)
    started = time.monotonic()

    with pytest.raises(StoreUnavailable) as raised:
        async with asyncio.timeout(5):
            await acks(store, 1, timeout=0.15, redis_timeout=0.15).confirm(SID)

    elapsed = time.monotonic() - started
    assert isinstance(raised.value.cause, TimeoutError)
    assert 0.29 <= elapsed < 1.0, elapsed  # bounded by WAIT's 0.15 s plus the 0.15 s round trip


async def test_an_answer_later_than_either_bound_alone_but_within_both_is_taken() -> None:
    store = FakeReplicatingStore(acknowledged=1, delay=0.22)  # > 0.15, < 0.15 + 0.15

    await acks(store, 1, timeout=0.15, redis_timeout=0.15).confirm(SID)

    assert len(store.calls) == 1


async def test_a_redis_error_is_a_store_unavailable_caused_by_it() -> None:
    failure = RedisConnectionError("redis went away")

    with pytest.raises(StoreUnavailable) as raised:
        await acks(FakeReplicatingStore(error=failure), 1).confirm(SID)

    assert raised.value.cause is failure and raised.value.operation == "replicate"


# -- the real WAIT ---------------------------------------------------------------------------------------
async def test_a_lone_redis_acknowledges_with_no_replica_after_the_wait_and_at_once_when_none_is_required(
    private_redis: Redis,
) -> None:
    store = store_for(private_redis, "replication-a")
    sid = new_session_id()
    await store.create(sid, {"sessionId": sid, "seq": "0"})
    await private_redis.expire(keys.snapshot(sid), 100)

    started = time.monotonic()
    assert await store.replicate(sid, 1, 50) == 0
    waited = time.monotonic() - started
    assert 0.045 <= waited < 2.0, waited
    # The session's own write goes first on WAIT's connection: its TTL is renewed.
    assert await private_redis.ttl(keys.snapshot(sid)) > 1000

    started = time.monotonic()
    assert await store.replicate(sid, 0, 50) == 0
    assert time.monotonic() - started < 0.04

    with pytest.raises(StoreUnavailable) as raised:
        await ReplicaAcks(store, 1, timeout_seconds=0.05, redis_timeout_seconds=1).confirm(sid)
    assert isinstance(raised.value.cause, NotReplicated) and raised.value.cause.acknowledged == 0
