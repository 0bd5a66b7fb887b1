"""What the lease keeper records, over a real Redis: adoptions by why the session needed a driver, and the
leases held (the sessions driven here) as a scrape reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aura.session.leases import LeaseKeeper
from aura.session.session import Session
from tests.support.metrics import labels, of
from tests.support.sessions import Driver, store_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def drivers(private_redis: Redis) -> AsyncIterator[list[Driver]]:
    await private_redis.flushdb()  # no instance of another test is found dead here
    made: list[Driver] = []
    yield made
    for driver in made:
        await driver.writer.aclose()


def driver(drivers: list[Driver], redis: Redis, instance: str) -> Driver:
    made = Driver(store_for(redis, instance))
    drivers.append(made)
    return made


async def test_sessions_of_a_dead_instance_and_a_stranded_one_are_counted_adopted_and_held(
    drivers: list[Driver], private_redis: Redis
) -> None:
    dead = driver(drivers, private_redis, "dead-instance")  # never heartbeats: dead from the start
    await asyncio.gather(*(dead.create() for _ in range(3)))
    me = driver(drivers, private_redis, "me")
    adopted: list[Session] = []
    keeper = LeaseKeeper(me.store, me.registry, lease_seconds=30, redis_timeout_seconds=5,
                         on_adopted=adopted.append, on_taken=lambda session: None, metrics=me.metrics)
    before = of(me.metrics)

    await keeper.round()

    after = of(me.metrics)
    assert len(adopted) == 3
    assert after.deltas(before, "aura_session_adoptions_total") == {labels(reason="instance_died"): 3}
    assert after.value("aura_leases_held") == 3
    assert after.value("aura_sessions_live", state="planning") == 3

    stranded = adopted[0]
    me.registry.drop(stranded)  # its run stopped while Redis was away: it left the registry, kept its lease
    keeper.strand(stranded.id)
    assert of(me.metrics).value("aura_leases_held") == 2  # held in Redis, but driven nowhere until the next round
    await keeper.round()

    final = of(me.metrics)
    assert final.deltas(after, "aura_session_adoptions_total") == {labels(reason="stranded"): 1}
    assert final.value("aura_leases_held") == 3
