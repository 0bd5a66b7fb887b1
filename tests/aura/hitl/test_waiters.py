"""The hub's waiters without its subscriber loop: registering, offering, delivering and re-checking.

No Redis: the hub's subscriber client is never used when its loop is not run, and decisions are
re-read from an in-memory DecisionSource. Written against the survivors of ``make mutate``
(docs/TESTING.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aura.errors import StoreUnavailable
from aura.hitl.hub import ApprovalWaiter, SignalHub
from aura.hitl.signals import Decision, Signal

pytestmark = pytest.mark.anyio

REDIS_TIMEOUT = 0.2


@dataclass
class Decisions:
    """A DecisionSource: what main-service stored, by session; it can fail, hang or answer short."""

    by_session: dict[str, Signal] = field(default_factory=dict)
    asked: list[list[tuple[str, str]]] = field(default_factory=list)
    fail: BaseException | None = None
    hang: bool = False
    short: bool = False

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.asked.append(list(pending))
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.Event().wait()
        found: list[Signal | None] = []
        for session_id, request_id in pending:
            signal = self.by_session.get(session_id)
            found.append(signal if signal is not None and signal.request_id == request_id else None)
        return found[:-1] if self.short else found


def hub_with(store: Decisions | None = None) -> SignalHub:
    never_used = cast(Redis, object())  # the loop is not run: the subscriber is never touched
    return SignalHub(never_used, store or Decisions(), sweep_seconds=60, redis_timeout_seconds=REDIS_TIMEOUT)


def approval(request_id: str) -> Signal:
    return Signal(request_id, Decision.APPROVED, timestamp=1)


# -- ApprovalWaiter.offer ------------------------------------------------------------------------
async def test_a_waiter_takes_the_first_decision_for_its_request_only() -> None:
    waiter = ApprovalWaiter("sess_a", "req_a", generation=1)
    assert waiter.offer(approval("req_other")) is False
    assert not waiter.decision.done()
    first = approval("req_a")
    assert waiter.offer(first) is True
    assert waiter.offer(Signal("req_a", Decision.REJECTED)) is False  # a duplicate changes nothing
    assert waiter.decision.result() is first


# -- a new hub -------------------------------------------------------------------------------------
async def test_a_new_hub_is_unsubscribed_at_generation_zero_and_has_ignored_nothing() -> None:
    hub = hub_with()
    assert hub.generation == 0
    assert not hub.subscribed.is_set()
    assert hub.ignored_signals == 0
    assert hub.waiting == 0


# -- register / unregister / listened_throughout ----------------------------------------------------
async def test_a_waiter_registered_while_unsubscribed_is_marked_minus_one_and_never_listened_throughout() -> None:
    hub = hub_with()
    hub.generation = 3  # it was subscribed before, and lost the subscription
    waiter = hub.register("sess_a", "req_a")
    assert waiter.generation == -1
    hub.subscribed.set()
    assert not hub.listened_throughout(waiter)


async def test_a_waiter_registered_while_subscribed_keeps_the_generation_until_it_changes() -> None:
    hub = hub_with()
    hub.generation = 3
    hub.subscribed.set()
    waiter = hub.register("sess_a", "req_a")
    assert waiter.generation == 3
    assert hub.listened_throughout(waiter)
    hub.generation += 1  # a reconnect in between
    assert not hub.listened_throughout(waiter)


async def test_unregister_removes_only_the_waiter_it_is_given() -> None:
    hub = hub_with()
    old = hub.register("sess_a", "req_old")
    new = hub.register("sess_a", "req_new")  # the session asked again
    hub.unregister(old)
    assert hub.waiting == 1
    assert hub.deliver("sess_a", approval("req_new").to_json())
    hub.unregister(new)
    assert hub.waiting == 0


# -- deliver: a message is a wake-up, the record decides (issue 10) -----------------------------------
async def settled(hub: SignalHub) -> None:
    """Until every woken session's record has been read."""
    async with asyncio.timeout(5):
        while hub.reading:
            await asyncio.sleep(0.001)


async def test_a_message_wakes_the_waiter_which_takes_the_decision_its_record_holds() -> None:
    store = Decisions(by_session={"sess_a": approval("req_a")})
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert hub.deliver("sess_a", approval("req_a").to_json()) is True
    assert await asyncio.wait_for(asyncio.shield(waiter.decision), 5) == approval("req_a")
    assert store.asked == [[("sess_a", "req_a")]]
    assert (hub.wakeups, hub.ignored_signals, hub.unconfirmed_wakeups) == (1, 0, 0)


async def test_the_record_decides_even_when_the_message_says_otherwise() -> None:
    store = Decisions(by_session={"sess_a": Signal("req_a", Decision.REJECTED, reason="No")})
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert hub.deliver("sess_a", approval("req_a").to_json())
    signal = await asyncio.wait_for(asyncio.shield(waiter.decision), 5)
    assert signal.decision is Decision.REJECTED and signal.reason == "No"


@pytest.mark.parametrize(
    "raw",
    [
        approval("req_a").to_json(),  # a bare PUBLISH of an approval: the record still says pending
        "not json",
        '{"type":"approval"}',
        approval("req_stale").to_json(),  # another request of the session
        "x" * 70_000,  # larger than any signal
    ],
    ids=["bare-approval", "not-json", "no-request-id", "stale", "huge"],
)
async def test_a_message_without_a_decision_on_the_record_wakes_the_waiter_and_changes_nothing(raw: str) -> None:
    store = Decisions()  # the record holds no decision
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert hub.deliver("sess_a", raw) is True
    await settled(hub)
    assert not waiter.decision.done()
    assert store.asked == [[("sess_a", "req_a")]]
    assert (hub.wakeups, hub.ignored_signals, hub.unconfirmed_wakeups) == (1, 0, 1)


async def test_a_message_for_a_session_nobody_waits_on_here_is_ignored_without_a_read() -> None:
    store = Decisions(by_session={"sess_nobody": approval("req_a")})
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert hub.deliver("sess_nobody", approval("req_a").to_json()) is False
    await settled(hub)
    assert store.asked == [] and not waiter.decision.done()
    assert (hub.wakeups, hub.ignored_signals) == (0, 1)


async def test_duplicate_wake_ups_before_the_read_cost_one_read_and_after_the_decision_none() -> None:
    """CONTRACT §4.4: main-service may publish twice; duplicates are harmless."""
    store = Decisions(by_session={"sess_a": approval("req_a")})
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert all([hub.deliver("sess_a", approval("req_a").to_json()) for _ in range(3)])  # before the reader ran
    await settled(hub)
    assert waiter.decision.done() and store.asked == [[("sess_a", "req_a")]]
    assert hub.deliver("sess_a", approval("req_a").to_json()) is False  # decided already: nothing to read
    await settled(hub)
    assert len(store.asked) == 1
    assert (hub.wakeups, hub.ignored_signals, hub.unconfirmed_wakeups) == (3, 1, 0)


async def test_the_records_of_sessions_woken_together_are_read_in_one_round_trip() -> None:
    store = Decisions(by_session={f"sess_{n}": approval(f"req_{n}") for n in range(3)})
    hub = hub_with(store)
    waiters = [hub.register(f"sess_{n}", f"req_{n}") for n in range(3)]
    for n in range(3):
        hub.deliver(f"sess_{n}", "{}")
    await settled(hub)
    assert store.asked == [[(f"sess_{n}", f"req_{n}") for n in range(3)]]
    assert all(w.decision.done() for w in waiters)


async def test_a_waiter_that_was_replaced_before_its_read_is_not_read() -> None:
    store = Decisions(by_session={"sess_a": approval("req_old")})
    hub = hub_with(store)
    old = hub.register("sess_a", "req_old")
    hub.deliver("sess_a", "{}")
    hub.unregister(old)  # its wait ended before the reader ran
    await settled(hub)
    assert store.asked == [] and not old.decision.done()


async def test_a_failed_read_after_a_wake_up_is_left_to_the_sweep_and_the_next_wake_up_reads_again() -> None:
    store = Decisions(fail=RedisConnectionError("refused"))
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_a")
    assert hub.deliver("sess_a", approval("req_a").to_json())
    await settled(hub)
    assert not waiter.decision.done() and hub.unconfirmed_wakeups == 0  # not read, so not unconfirmed
    store.fail = None
    store.by_session["sess_a"] = approval("req_a")
    assert hub.deliver("sess_a", approval("req_a").to_json())
    assert await asyncio.wait_for(asyncio.shield(waiter.decision), 5) == approval("req_a")
    assert len(store.asked) == 2


async def test_a_hung_read_after_a_wake_up_gives_up_after_the_redis_timeout() -> None:
    store = Decisions(hang=True)
    hub = hub_with(store)
    hub.register("sess_a", "req_a")
    hub.deliver("sess_a", "{}")
    await settled(hub)  # bounded by REDIS_TIMEOUT, well inside the 5 s of `settled`
    assert len(store.asked) == 1


# -- recheck ------------------------------------------------------------------------------------------
async def test_recheck_of_given_waiters_asks_only_about_those_still_undecided() -> None:
    store = Decisions(by_session={"sess_a": approval("req_a"), "sess_b": approval("req_b")})
    hub = hub_with(store)
    a = hub.register("sess_a", "req_a")
    b = hub.register("sess_b", "req_b")
    done = ApprovalWaiter("sess_c", "req_c", 0)
    done.offer(approval("req_c"))
    await hub.recheck([a, done])
    assert store.asked == [[("sess_a", "req_a")]]
    assert a.decision.result() == approval("req_a")
    assert not b.decision.done()


async def test_recheck_without_waiters_asks_about_every_registered_one() -> None:
    store = Decisions(by_session={"sess_b": approval("req_b")})
    hub = hub_with(store)
    a = hub.register("sess_a", "req_a")
    b = hub.register("sess_b", "req_b")
    await hub.recheck()
    assert store.asked == [[("sess_a", "req_a"), ("sess_b", "req_b")]]
    assert not a.decision.done()
    assert b.decision.result() == approval("req_b")


async def test_recheck_with_nothing_pending_does_not_ask() -> None:
    store = Decisions()
    hub = hub_with(store)
    await hub.recheck()
    await hub.recheck([])
    assert store.asked == []


async def test_a_decision_for_an_older_request_of_the_session_is_not_taken() -> None:
    store = Decisions(by_session={"sess_a": approval("req_old")})
    hub = hub_with(store)
    waiter = hub.register("sess_a", "req_new")
    await hub.recheck()
    assert not waiter.decision.done()


async def test_a_failing_recheck_is_reported_as_store_unavailable_naming_the_operation() -> None:
    cause = RedisConnectionError("refused")
    hub = hub_with(Decisions(fail=cause))
    hub.register("sess_a", "req_a")
    with pytest.raises(StoreUnavailable) as caught:
        await hub.recheck()
    assert caught.value.operation == "re-check decisions"
    assert caught.value.cause is cause


async def test_a_hung_recheck_gives_up_after_the_redis_timeout() -> None:
    hub = hub_with(Decisions(hang=True))
    hub.register("sess_a", "req_a")
    async with asyncio.timeout(5):
        with pytest.raises(StoreUnavailable) as caught:
            await hub.recheck()
    assert isinstance(caught.value.cause, TimeoutError)
    assert caught.value.operation == "re-check decisions"


async def test_a_store_that_answers_fewer_decisions_than_asked_is_an_error() -> None:
    hub = hub_with(Decisions(short=True, by_session={"sess_a": approval("req_a")}))
    hub.register("sess_a", "req_a")
    hub.register("sess_b", "req_b")
    with pytest.raises(ValueError):
        await hub.recheck()
