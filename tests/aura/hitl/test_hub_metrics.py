"""What the hub records of its sweeps: every sweep, and the decisions a sweep (not a message) handed over.
No Redis: decisions are re-read from the in-memory DecisionSource of test_waiters."""

from __future__ import annotations

from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aura.hitl.hub import SignalHub
from aura.metrics import Metrics
from tests.aura.hitl.test_waiters import REDIS_TIMEOUT, Decisions, approval
from tests.support.metrics import of

pytestmark = pytest.mark.anyio


def hub_with(store: Decisions, metrics: Metrics) -> SignalHub:
    never_used = cast(Redis, object())  # the loop is not run: the subscriber is never touched
    return SignalHub(never_used, store, sweep_seconds=60, redis_timeout_seconds=REDIS_TIMEOUT, metrics=metrics)


async def test_recheck_says_how_many_decisions_it_handed_over() -> None:
    store = Decisions(by_session={"sess_a": approval("req_a")})
    hub = hub_with(store, Metrics())
    a = hub.register("sess_a", "req_a")
    hub.register("sess_b", "req_b")
    assert await hub.recheck() == 1
    assert a.decision.done()
    assert await hub.recheck() == 0  # nothing new: the decided waiter is not asked about again


async def test_each_sweep_is_counted_and_so_is_each_decision_it_found() -> None:
    store = Decisions()
    metrics = Metrics()
    hub = hub_with(store, metrics)
    hub.register("sess_a", "req_a")
    hub.register("sess_b", "req_b")

    await hub._sweep()  # nothing decided yet
    store.by_session = {"sess_a": approval("req_a"), "sess_b": approval("req_b")}  # their messages were lost
    await hub._sweep()
    await hub._sweep()  # both already decided: nothing more is found

    scrape = of(metrics)
    assert scrape.value("aura_hitl_sweeps_total") == 3
    assert scrape.value("aura_hitl_sweep_decisions_total") == 2


async def test_a_failed_sweep_is_not_counted() -> None:
    metrics = Metrics()
    hub = hub_with(Decisions(fail=RedisConnectionError("refused")), metrics)
    hub.register("sess_a", "req_a")
    await hub._sweep()  # logged; the next sweep retries
    assert of(metrics).value("aura_hitl_sweeps_total") == 0
