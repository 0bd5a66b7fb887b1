"""The lease keeper over a real Redis: the heartbeat, adoption of dead instances' sessions, stranded
sessions, sessions taken while our heartbeat lapsed, and draining.

Rounds are called one at a time (``LeaseKeeper.round``), never through ``run()``: what one round
does is what each test pins. Every test starts from an empty database of the module's own server,
so no instance registered by another test is found dead (and adopted) here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from aura.errors import LeaseLost
from aura.session.leases import ADOPTION_BATCH, LeaseKeeper
from aura.session.session import Session
from aura.session.snapshot import F
from aura.session.store import Append, SessionStore
from aura.storage import keys
from tests.support.sessions import Driver

pytestmark = pytest.mark.anyio

LEASE = 30.0  # long enough that no heartbeat lapses, and no round hits its deadline, unless a test says so
DEAD = "dead-instance"


@dataclass
class Instance:
    """One instance's store, registry and keeper, with what its keeper reported."""

    driver: Driver
    keeper: LeaseKeeper
    adopted: list[Session] = field(default_factory=list)
    taken: list[Session] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.driver.store.instance_id

    def adopted_ids(self) -> list[str]:
        return [s.id for s in self.adopted]


@dataclass
class Cluster:
    """The instances of one test, all over the same Redis; their writers are closed at the end."""

    redis: Redis
    drivers: list[Driver] = field(default_factory=list)

    def driver(self, instance_id: str, lease_seconds: float = LEASE, store: SessionStore | None = None) -> Driver:
        if store is None:
            store = SessionStore(self.redis, instance_id, ttl_seconds=1800, max_events=1000,
                                 lease_seconds=lease_seconds)
        driver = Driver(store)
        self.drivers.append(driver)
        return driver

    def instance(self, instance_id: str, lease_seconds: float = LEASE, store: SessionStore | None = None) -> Instance:
        driver = self.driver(instance_id, lease_seconds, store)
        adopted: list[Session] = []
        taken: list[Session] = []
        keeper = LeaseKeeper(driver.store, driver.registry, lease_seconds=lease_seconds, redis_timeout_seconds=5,
                             on_adopted=adopted.append, on_taken=taken.append)
        return Instance(driver, keeper, adopted, taken)

    async def aclose(self) -> None:
        for driver in self.drivers:
            await driver.writer.aclose()


@pytest.fixture
async def cluster(private_redis: Redis) -> AsyncIterator[Cluster]:
    await private_redis.flushdb()
    c = Cluster(private_redis)
    yield c
    await c.aclose()


async def create_many(driver: Driver, n: int) -> list[Session]:
    """``n`` sessions created by ``driver``'s instance (group-committed: a few round trips, not ``n``)."""
    return list(await asyncio.gather(*(driver.create() for _ in range(n))))


def ids(sessions: Iterable[Session]) -> set[str]:
    return {s.id for s in sessions}


async def owners(redis: Redis, session_ids: Iterable[str]) -> dict[str, str | None]:
    listed = list(session_ids)
    values = await redis.mget([keys.lease(sid) for sid in listed]) if listed else []
    return {sid: None if value is None else str(value) for sid, value in zip(listed, values, strict=True)}


async def members(redis: Redis, instance_id: str) -> set[str]:
    return {str(sid) for sid in await redis.smembers(keys.instance_sessions(instance_id))}


async def command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name: int(entry["calls"]) for name, entry in stats.items() if name.startswith("cmdstat_")}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}


# -- the cost of a round -------------------------------------------------------------------------------
async def cost_of_a_round_with(cluster: Cluster, n: int) -> dict[str, int]:
    """The commands (by name) of one round of an instance driving ``n`` sessions, beside an alive peer
    that drives ``n`` more."""
    await cluster.redis.flushdb()
    me = cluster.instance(f"cost-me-{n}")
    peer = cluster.driver(f"cost-peer-{n}")
    assert not await peer.store.heartbeat()
    await create_many(me.driver, n)
    await create_many(peer, n)
    await me.keeper.round()  # our first heartbeat finds none before it: it reads our leases, once
    assert await cluster.redis.smembers(keys.INSTANCES) == {me.id, peer.store.instance_id}

    before = await command_calls(cluster.redis)
    await me.keeper.round()
    after = await command_calls(cluster.redis)

    assert me.adopted == [] and me.taken == []
    assert len(await members(cluster.redis, me.id)) == n and len(await members(cluster.redis, peer.store.instance_id)) == n
    return delta(before, after)


async def test_a_round_while_every_instance_is_alive_costs_the_same_whatever_the_number_of_sessions(
    cluster: Cluster,
) -> None:
    few = await cost_of_a_round_with(cluster, 10)
    many = await cost_of_a_round_with(cluster, 1000)

    assert many == few
    # The measure does see the round: its heartbeat, and nothing near one command per session.
    assert few.get("cmdstat_set", 0) >= 1, few
    assert sum(few.values()) < 20, few


# -- adopting a dead instance's sessions -----------------------------------------------------------------
async def test_one_round_adopts_every_session_of_a_dead_instance_batch_after_batch(cluster: Cluster) -> None:
    n = 2 * ADOPTION_BATCH + 200  # more than two batches
    dead = cluster.driver(DEAD)  # never heartbeats: dead from the start
    created = ids(await create_many(dead, n))
    survivor = cluster.instance("survivor")
    assert await members(cluster.redis, DEAD) == created

    await survivor.keeper.round()

    assert len(survivor.adopted) == n and ids(survivor.adopted) == created  # each once, all of them
    assert survivor.keeper.adopted == n
    assert await cluster.redis.scard(keys.instance_sessions(DEAD)) == 0
    assert await cluster.redis.smembers(keys.INSTANCES) == {"survivor"}
    assert set((await owners(cluster.redis, created)).values()) == {"survivor"}
    assert await members(cluster.redis, "survivor") == created
    assert all(survivor.driver.registry.local(sid) is not None for sid in created)


class RacingStore(SessionStore):
    """A SessionStore whose first take-over waits at ``barrier``: two survivors both read the leases of
    their first batches before either moves one, so their compare-and-sets really race."""

    def __init__(self, redis: Redis, instance_id: str, barrier: asyncio.Barrier) -> None:
        super().__init__(redis, instance_id, ttl_seconds=1800, max_events=1000, lease_seconds=LEASE)
        self._barrier: asyncio.Barrier | None = barrier
        self.lost = 0  # compare-and-sets this instance lost

    async def take_over(self, session_ids: Sequence[str], expected_owners: Sequence[str | None]) -> list[bool]:
        barrier, self._barrier = self._barrier, None
        if barrier is not None:
            await barrier.wait()
        won = await super().take_over(session_ids, expected_owners)
        self.lost += won.count(False)
        return won


async def test_two_survivors_adopting_the_same_dead_instance_at_once_adopt_each_session_exactly_once(
    cluster: Cluster,
) -> None:
    n = 2 * ADOPTION_BATCH + 200
    barrier = asyncio.Barrier(2)
    store_a = RacingStore(cluster.redis, "survivor-a", barrier)
    store_b = RacingStore(cluster.redis, "survivor-b", barrier)
    a, b = cluster.instance("survivor-a", store=store_a), cluster.instance("survivor-b", store=store_b)
    await store_a.heartbeat()  # both alive and registered before the instance dies
    await store_b.heartbeat()
    created = ids(await create_many(cluster.driver(DEAD), n))

    async with asyncio.timeout(20):
        await asyncio.gather(a.keeper.round(), b.keeper.round())

    by_a, by_b = a.adopted_ids(), b.adopted_ids()
    assert store_a.lost + store_b.lost > 0  # they did race for the same sessions (two random batches overlap)
    assert len(by_a) + len(by_b) == n, (len(by_a), len(by_b))  # nobody adopted a session twice
    assert set(by_a).isdisjoint(by_b)
    assert set(by_a) | set(by_b) == created
    leases = await owners(cluster.redis, created)
    assert {sid for sid, owner in leases.items() if owner == "survivor-a"} == set(by_a)
    assert {sid for sid, owner in leases.items() if owner == "survivor-b"} == set(by_b)
    # A survivor that lost a session's compare-and-set does not keep it listed as its own.
    assert await members(cluster.redis, "survivor-a") == set(by_a)
    assert await members(cluster.redis, "survivor-b") == set(by_b)
    assert await cluster.redis.scard(keys.instance_sessions(DEAD)) == 0
    assert DEAD not in await cluster.redis.smembers(keys.INSTANCES)


async def test_a_session_in_a_dead_set_that_an_alive_instance_drives_is_left_to_it_and_leaves_the_dead_set(
    cluster: Cluster,
) -> None:
    dead = cluster.driver(DEAD)
    orphan, moved = await create_many(dead, 2)
    peer = cluster.driver("peer")
    assert not await peer.store.heartbeat()  # alive
    await cluster.redis.set(keys.lease(moved.id), "peer")  # the peer took it; the dead set still lists it
    survivor = cluster.instance("survivor")

    await survivor.keeper.round()

    assert survivor.adopted_ids() == [orphan.id]
    assert survivor.driver.registry.local(moved.id) is None
    assert await owners(cluster.redis, [orphan.id, moved.id]) == {orphan.id: "survivor", moved.id: "peer"}
    assert await members(cluster.redis, DEAD) == set()
    assert await members(cluster.redis, "survivor") == {orphan.id}
    assert DEAD not in await cluster.redis.smembers(keys.INSTANCES)


async def test_an_ended_or_expired_session_in_a_dead_set_is_let_go_not_adopted(cluster: Cluster) -> None:
    dead = cluster.driver(DEAD)
    orphan, ended, expired = await create_many(dead, 3)
    # Ended: the end is written (the state final, the lease dropped), then the instance died before
    # the session left its set.
    await cluster.redis.hset(keys.snapshot(ended.id), F.STATE, "done")
    await cluster.redis.delete(keys.lease(ended.id))
    # Expired: the snapshot is gone; the lease still names the dead instance.
    await cluster.redis.delete(keys.snapshot(expired.id))
    assert await owners(cluster.redis, [expired.id]) == {expired.id: DEAD}
    survivor = cluster.instance("survivor")

    await survivor.keeper.round()

    assert survivor.adopted_ids() == [orphan.id] and survivor.keeper.adopted == 1
    assert survivor.driver.registry.local(ended.id) is None and survivor.driver.registry.local(expired.id) is None
    leases = await owners(cluster.redis, [orphan.id, ended.id, expired.id])
    assert leases == {orphan.id: "survivor", ended.id: None, expired.id: None}  # released, not kept
    assert await members(cluster.redis, "survivor") == {orphan.id}
    assert await members(cluster.redis, DEAD) == set()


# -- stranded sessions --------------------------------------------------------------------------------
async def test_a_stranded_session_is_driven_again_by_the_next_round_unless_someone_else_holds_it(
    cluster: Cluster,
) -> None:
    me = cluster.instance("me")
    await me.keeper.round()
    ours, taken, still_held = await create_many(me.driver, 3)
    me.driver.registry.drop(ours)  # their runs stopped while Redis was away: they left the registry
    me.driver.registry.drop(taken)
    await cluster.redis.set(keys.lease(taken.id), "other")  # meanwhile another instance took this one
    for session in (ours, taken, still_held):
        me.keeper.strand(session.id)
    assert me.adopted == []  # stranding alone drives nothing

    await me.keeper.round()

    assert me.adopted_ids() == [ours.id]
    again = me.driver.registry.local(ours.id)
    assert again is not None and again is not ours  # restored from its snapshot
    assert me.driver.registry.local(taken.id) is None
    assert me.driver.registry.local(still_held.id) is still_held  # not adopted a second time
    assert await owners(cluster.redis, [ours.id, taken.id]) == {ours.id: "me", taken.id: "other"}

    # Driven again, it ends and leaves the registry: being stranded once does not re-drive it for ever.
    me.driver.registry.drop(again)
    await me.keeper.round()
    assert me.adopted_ids() == [ours.id]


# -- our own heartbeat lapsed ------------------------------------------------------------------------------
@pytest.mark.parametrize("lapse", ["deleted", "expired"])
async def test_after_our_heartbeat_lapsed_a_round_reports_the_sessions_others_took_and_only_those(
    cluster: Cluster, lapse: str
) -> None:
    lease = 0.3 if lapse == "expired" else LEASE
    me = cluster.instance("me", lease_seconds=lease)
    kept, stolen, unleased = await create_many(me.driver, 3)
    await me.keeper.round()
    await me.keeper.round()
    assert me.taken == []  # our heartbeat was continuous

    if lapse == "deleted":
        await cluster.redis.delete(keys.instance("me"))
    else:
        await asyncio.sleep(lease + 0.1)
        assert not await cluster.redis.exists(keys.instance("me"))
    await cluster.redis.set(keys.lease(stolen.id), "thief")
    await cluster.redis.delete(keys.lease(unleased.id))

    await me.keeper.round()

    assert me.taken == [stolen]
    assert kept.id in ids(me.driver.registry.all())


# -- heartbeat_fresh ----------------------------------------------------------------------------------------
async def test_heartbeat_fresh_holds_for_a_lease_after_each_round_and_not_before_the_first(cluster: Cluster) -> None:
    me = cluster.instance("me", lease_seconds=0.3)
    assert not me.keeper.heartbeat_fresh

    await me.keeper.round()
    assert me.keeper.heartbeat_fresh

    await asyncio.sleep(0.4)
    assert not me.keeper.heartbeat_fresh

    await me.keeper.round()
    assert me.keeper.heartbeat_fresh


# -- draining --------------------------------------------------------------------------------------------
async def test_release_all_drops_our_leases_and_heartbeat_so_another_instance_adopts_at_its_next_round(
    cluster: Cluster,
) -> None:
    leaver, heir = cluster.instance("leaver"), cluster.instance("heir")
    await leaver.keeper.round()
    await heir.keeper.round()
    first, second, not_ours = await create_many(leaver.driver, 3)
    await cluster.redis.set(keys.lease(not_ours.id), "other")  # listed here, but another instance drives it

    await leaver.keeper.release_all([first, second, not_ours])

    leases = await owners(cluster.redis, [first.id, second.id, not_ours.id])
    assert leases == {first.id: None, second.id: None, not_ours.id: "other"}  # only ours went
    assert not await cluster.redis.exists(keys.instance("leaver"))
    assert await cluster.redis.exists(keys.instance("heir"))
    await leaver.keeper.round()  # stopped: no heartbeat comes back, nothing is adopted
    assert not await cluster.redis.exists(keys.instance("leaver")) and leaver.adopted == []

    await heir.keeper.round()

    assert ids(heir.adopted) == {first.id, second.id} and len(heir.adopted) == 2
    leases = await owners(cluster.redis, [first.id, second.id, not_ours.id])
    assert leases == {first.id: "heir", second.id: "heir", not_ours.id: "other"}
    assert await members(cluster.redis, "heir") == {first.id, second.id}
    assert "leaver" not in await cluster.redis.smembers(keys.INSTANCES)


async def test_a_session_whose_lease_a_failed_round_already_took_is_adopted_by_the_next_one(cluster: Cluster) -> None:
    """Regression: a round that took a lease and failed before driving the session left it ours in
    Redis and nobody's in memory; the next round skipped it as "not the dead instance's"."""
    dead = cluster.driver(DEAD)
    [session] = await create_many(dead, 1)
    survivor = cluster.instance("survivor")
    await cluster.redis.set(keys.lease(session.id), "survivor")  # what the failed round had done

    await survivor.keeper.round()

    assert survivor.adopted_ids() == [session.id]
    assert await members(cluster.redis, "survivor") == {session.id}
    assert await members(cluster.redis, DEAD) == set()


async def test_a_take_over_retried_after_its_reply_was_lost_still_says_it_won(cluster: Cluster) -> None:
    """Regression: the compare-and-set found its own new value and answered "lost", and the adopter
    then took the session out of its own set."""
    dead = cluster.driver(DEAD)
    [session] = await create_many(dead, 1)
    survivor = cluster.driver("survivor")
    assert await survivor.store.take_over([session.id], [DEAD]) == [True]
    assert await survivor.store.take_over([session.id], [DEAD]) == [True]  # the retry
    assert await cluster.driver("other").store.take_over([session.id], [DEAD]) == [False]


async def test_an_end_refused_for_a_lost_lease_leaves_the_session_in_the_set(cluster: Cluster) -> None:
    """Regression: the SREM of an ended session went with the end script, whatever its outcome."""
    driver = cluster.driver("ender")
    [session] = await create_many(driver, 1)
    await cluster.redis.set(keys.lease(session.id), "someone-else")
    [failure] = await driver.store.commit([Append(session.id, (), {"seq": "0"}, 0, end=True)])
    assert isinstance(failure, LeaseLost)
    assert await members(cluster.redis, "ender") == {session.id}
