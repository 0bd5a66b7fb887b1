"""Per-user and per-tenant session quotas, counted in a real Redis (issue 10 items 1 and 2)."""

from __future__ import annotations

import time
import uuid

import pytest
from redis.asyncio import Redis

from aura.auth import Principal
from aura.errors import TooManyRequests
from aura.ids import new_session_id
from aura.session.quotas import LIVE_RETRY_AFTER_SECONDS, QuotaLimits, SessionQuotas
from aura.session.store import Append, SessionStore
from aura.storage.scripts import run_scripts
from aura.storage import keys

pytestmark = pytest.mark.anyio


def quotas(redis: Redis, *, live: int = 2, tenant: int = 3, kept: int = 4, finished_ttl: float = 600) -> SessionQuotas:
    limits = QuotaLimits(
        live_per_user=live, live_per_tenant=tenant, kept_per_user=kept, live_ttl_seconds=3600,
        finished_ttl_seconds=finished_ttl,
    )
    return SessionQuotas(redis, limits, redis_timeout_seconds=2)


def someone(tenant: str | None = None) -> Principal:
    """A user of a tenant no other test uses: the shared Redis keeps other tests' entries."""
    return Principal(user_id="u1", tenant_id=tenant or f"t-{uuid.uuid4().hex[:8]}")


def live_of(owner: Principal) -> str:
    return keys.user_live(owner.tenant_id, owner.user_id)


def kept_of(owner: Principal) -> str:
    return keys.user_kept(owner.tenant_id, owner.user_id)


async def admit(redis: Redis, q: SessionQuotas, owner: Principal, session_id: str) -> None:
    """The admission as the store runs it, on its own: counted, or the refusal raised."""
    [answer] = await run_scripts(redis, [q.admission(owner, session_id)])
    refused = q.verdict(answer)
    if refused is not None:
        raise refused


async def finish(redis: Redis, q: SessionQuotas, owner: Principal, session_id: str) -> None:
    """The release of an ended session as the store runs it."""
    await run_scripts(redis, [q.release(owner, session_id, keep=True)])


async def refusal(redis: Redis, q: SessionQuotas, owner: Principal, session_id: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        await admit(redis, q, owner, session_id)
    return caught.value


async def test_a_user_at_the_live_limit_is_refused_until_a_session_finishes(redis: Redis) -> None:
    q, owner = quotas(redis), someone()
    await admit(redis, q, owner, "s1")
    await admit(redis, q, owner, "s2")
    refused = await refusal(redis, q, owner, "s3")
    assert (refused.limit, refused.retry_after_seconds) == ("AURA_MAX_LIVE_SESSIONS_PER_USER", LIVE_RETRY_AFTER_SECONDS)
    assert refused.status == 429 and refused.error_code == "E1005"
    assert refused.headers == {"Retry-After": str(LIVE_RETRY_AFTER_SECONDS)}
    await finish(redis, q, owner, "s1")
    await admit(redis, q, owner, "s3")
    assert await redis.zcard(live_of(owner)) == 2


async def test_admitting_the_same_session_twice_counts_it_once(redis: Redis) -> None:
    q, owner = quotas(redis, live=1), someone()
    await admit(redis, q, owner, "s1")
    await admit(redis, q, owner, "s1")  # a retried admission after a lost reply
    assert await redis.zcard(live_of(owner)) == 1


async def test_another_user_of_the_tenant_is_refused_at_the_tenant_limit_and_nothing_is_counted(redis: Redis) -> None:
    q = quotas(redis, live=2, tenant=3)
    alice = someone()
    bob = Principal(user_id="u2", tenant_id=alice.tenant_id)
    await admit(redis, q, alice, "a1")
    await admit(redis, q, alice, "a2")
    await admit(redis, q, bob, "b1")
    refused = await refusal(redis, q, bob, "b2")
    assert refused.limit == "AURA_MAX_LIVE_SESSIONS_PER_TENANT"
    # the user's own entries for the refused session were taken back
    assert await redis.zrange(live_of(bob), 0, -1) == ["b1"]
    assert await redis.zrange(kept_of(bob), 0, -1) == ["b1"]
    other_tenant = someone()
    await admit(redis, q, other_tenant, "c1")


async def test_finished_sessions_count_as_kept_until_their_ttl_and_retry_after_says_when(redis: Redis) -> None:
    q, owner = quotas(redis, live=10, tenant=10, kept=3, finished_ttl=120), someone()
    for sid in ("s1", "s2", "s3"):
        await admit(redis, q, owner, sid)
        await finish(redis, q, owner, sid)
    assert await redis.zcard(live_of(owner)) == 0
    refused = await refusal(redis, q, owner, "s4")
    assert refused.limit == "AURA_MAX_KEPT_SESSIONS_PER_USER"
    assert 115 <= refused.retry_after_seconds <= 120  # when the oldest finished session leaves Redis
    assert int(refused.headers["Retry-After"]) == refused.retry_after_seconds


async def test_a_kept_entry_lapses_when_its_session_would_leave_redis(redis: Redis) -> None:
    q, owner = quotas(redis, live=10, tenant=10, kept=1, finished_ttl=600), someone()
    await admit(redis, q, owner, "s1")
    await finish(redis, q, owner, "s1")
    kept = kept_of(owner)
    await redis.zadd(kept, {"s1": 1})  # as if its finished TTL had run out
    await admit(redis, q, owner, "s2")
    assert await redis.zrange(kept, 0, -1) == ["s2"]
    assert 0 < await redis.pttl(kept) <= 3600 * 1000


async def test_a_session_whose_creation_failed_is_forgotten_entirely(redis: Redis) -> None:
    q, owner = quotas(redis, live=1, kept=1), someone()
    await admit(redis, q, owner, "s1")
    await q.forget(owner, "s1")
    await admit(redis, q, owner, "s2")
    assert await redis.zrange(kept_of(owner), 0, -1) == ["s2"]
    assert await redis.zrange(keys.tenant_live(owner.tenant_id), 0, -1) == ["s2"]


async def test_finishing_a_session_that_already_lapsed_does_not_count_it_again(redis: Redis) -> None:
    q, owner = quotas(redis), someone()
    await finish(redis, q, owner, "never-admitted")
    assert await redis.exists(kept_of(owner)) == 0


async def test_every_quota_key_expires(redis: Redis) -> None:
    q, owner = quotas(redis), someone()
    await admit(redis, q, owner, "s1")
    for key in (live_of(owner), kept_of(owner),
                keys.tenant_live(owner.tenant_id)):
        assert 0 < await redis.pttl(key) <= 3600 * 1000, key


def test_a_tenants_quota_keys_share_one_hash_slot_for_redis_cluster() -> None:
    from redis.crc import key_slot

    for tenant, user in (("1", "7"), ("t}x", "u{y"), ("{", "}")):
        slots = {key_slot(key.encode()) for key in (keys.user_live(tenant, user), keys.user_kept(tenant, user),
                                                      keys.tenant_live(tenant))}
        assert len(slots) == 1


# -- counted where sessions are committed (the store) ------------------------------------------------
def counting_store(redis: Redis, q: SessionQuotas) -> SessionStore:
    return SessionStore(redis, f"quota-{uuid.uuid4().hex[:8]}", ttl_seconds=3600, max_events=1000, lease_seconds=30,
                        finished_ttl_seconds=600, quotas=q)


def create(owner: Principal) -> Append:
    return Append(new_session_id(), (), {"seq": "0", "state": "planning"}, 0, create=True, owner=owner)


async def test_a_creation_refused_by_a_quota_writes_nothing_and_leaves_no_instance_entry(redis: Redis) -> None:
    q, owner = quotas(redis, live=1), someone()
    store = counting_store(redis, q)
    first, second = create(owner), create(owner)
    assert await store.commit([first]) == [None]
    [refused] = await store.commit([second])
    assert isinstance(refused, TooManyRequests) and refused.limit == "AURA_MAX_LIVE_SESSIONS_PER_USER"
    sid = second.session_id
    assert await redis.exists(keys.snapshot(sid), keys.lease(sid), keys.events(sid)) == 0
    assert await redis.smembers(keys.instance_sessions(store.instance_id)) == {first.session_id}
    assert await redis.zrange(live_of(owner), 0, -1) == [first.session_id]
    assert await redis.zrange(kept_of(owner), 0, -1) == [first.session_id]
    assert await redis.zrange(keys.tenant_live(owner.tenant_id), 0, -1) == [first.session_id]


async def test_one_commit_admits_some_sessions_and_refuses_others(redis: Redis) -> None:
    q, owner = quotas(redis, live=2, tenant=10), someone()
    store = counting_store(redis, q)
    appends = [create(owner) for _ in range(3)]
    outcomes = await store.commit(appends)
    assert outcomes[:2] == [None, None] and isinstance(outcomes[2], TooManyRequests)
    assert await redis.zcard(keys.tenant_live(owner.tenant_id)) == 2  # the refused one was uncounted


async def test_a_session_whose_end_is_committed_is_live_no_more_but_kept_until_its_keys_go(redis: Redis) -> None:
    q, owner = quotas(redis, live=1, finished_ttl=600), someone()
    store = counting_store(redis, q)
    first = create(owner)
    assert await store.commit([first]) == [None]
    end = Append(first.session_id, (), {"seq": "0", "state": "done"}, 0, end=True, owner=owner)
    assert await store.commit([end]) == [None]
    assert await redis.zcard(live_of(owner)) == 0 and await redis.zcard(keys.tenant_live(owner.tenant_id)) == 0
    lapse = await redis.zscore(kept_of(owner), first.session_id)
    assert lapse is not None and abs(lapse / 1000 - (time.time() + 600)) < 5
    assert await store.commit([create(owner)]) == [None]  # its live place is free again
