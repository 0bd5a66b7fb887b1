"""The hub's subscriber loop against a scripted pub/sub: subscribe, dispatch, sweep, reconnect.

No Redis: ``FakeSubscriber`` stands in for the subscriber client and hands out ``FakePubSub``
connections whose failures the test scripts. Written against the survivors of ``make mutate``
(docs/TESTING.md); the real reconnect against a restarted redis-server is in test_hub.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aura.hitl.hub import SignalHub
from aura.hitl.signals import Decision, Signal
from aura.storage import keys

pytestmark = pytest.mark.anyio

WAIT = 5.0  # bound of every wait in these tests
_real_sleep = asyncio.sleep  # the tests' own polling, unaffected by the `sleeps` fixture
Message = dict[str, Any]


class Hang:
    """A scripted step that never returns (a Redis that stopped answering)."""


@dataclass
class SwallowCancel:
    """A scripted step that waits until the task is cancelled and swallows the cancel, as Python 3.11's
    ``asyncio.wait_for`` inside redis-py can when the reply lands at the same time; then raises ``then``."""

    then: BaseException | None = None


Step = BaseException | Hang | SwallowCancel


@dataclass
class FakeSubscriber:
    """The subscriber client: each ``pubsub()`` is one connection; steps script their calls in order."""

    subscribe_steps: list[Step] = field(default_factory=list)  # consumed by successive psubscribe calls
    read_steps: list[Step] = field(default_factory=list)  # consumed by get_message calls of any connection
    close_steps: list[Step] = field(default_factory=list)  # consumed by aclose calls
    connections: list[FakePubSub] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def pubsub(self, **options: Any) -> FakePubSub:
        connection = FakePubSub(self, options)
        self.connections.append(connection)
        return connection

    async def publish(self, message: Message) -> None:
        await self.connections[-1].inbox.put(message)


async def play(steps: list[Step]) -> bool:
    """Play the next step, if any; whether it swallowed a cancel."""
    if not steps:
        return False
    step = steps.pop(0)
    if isinstance(step, Hang):
        await asyncio.Event().wait()
        return False
    if isinstance(step, SwallowCancel):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        if step.then is not None:
            raise step.then
        return True
    raise step


@dataclass
class FakePubSub:
    server: FakeSubscriber
    options: dict[str, Any]
    patterns: tuple[str, ...] = ()
    channels: list[str] = field(default_factory=list)  # subscribed now, in subscription order
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    waits: list[float] = field(default_factory=list)
    closed: bool = False

    async def psubscribe(self, *patterns: str) -> None:
        await play(self.server.subscribe_steps)
        self.patterns = patterns
        self.server.subscribed.set()

    async def subscribe(self, *channels: str) -> None:
        self.channels += [c for c in channels if c not in self.channels]

    async def unsubscribe(self, *channels: str) -> None:
        self.channels = [c for c in self.channels if c not in channels]

    async def get_message(self, timeout: float) -> Message | None:
        self.waits.append(timeout)
        if await play(self.server.read_steps):
            return None  # the reply that came with the swallowed cancel: nothing
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        self.closed = True
        await play(self.server.close_steps)


@dataclass
class Decisions:
    """A DecisionSource that counts sweeps; decisions are keyed by session."""

    by_session: dict[str, Signal] = field(default_factory=dict)
    sweeps: int = 0
    fail_next: int = 0

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.sweeps += 1
        if self.fail_next:
            self.fail_next -= 1
            raise RedisConnectionError("sweep refused")
        return [
            signal if (signal := self.by_session.get(sid)) is not None and signal.request_id == rid else None
            for sid, rid in pending
        ]


@dataclass
class Parts:
    subscriber: FakeSubscriber = field(default_factory=FakeSubscriber)
    store: Decisions = field(default_factory=Decisions)
    grew: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def hub(self, *, sweep_seconds: float = 60.0, redis_timeout: float = 0.5) -> SignalHub:
        hub = SignalHub(
            cast(Redis, self.subscriber),
            self.store,
            sweep_seconds=sweep_seconds,
            redis_timeout_seconds=redis_timeout,
            on_log_grew=self.grew.append,
        )
        hub.on_cancel = self.cancelled.append
        return hub


@pytest.fixture
def parts() -> Parts:
    return Parts()


@contextlib.asynccontextmanager
async def running(hub: SignalHub) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(hub.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await _real_sleep(0.001)


def pmessage(channel: Any, data: Any) -> Message:
    return {"type": "pmessage", "pattern": None, "channel": channel, "data": data}


def approval(request_id: str) -> Signal:
    return Signal(request_id, Decision.APPROVED, timestamp=1)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The hub's back-off sleeps, recorded and cut short (other sleeps run as usual)."""
    recorded: list[float] = []

    def fake_sleep(delay: float, result: Any = None) -> Coroutine[Any, Any, Any]:
        if delay > 0:
            recorded.append(delay)
            delay = 0
        return _real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # the very module the hub calls asyncio.sleep on
    return recorded


# -- subscribing -----------------------------------------------------------------------------------
async def test_one_connection_subscribes_to_decisions_and_cancels_and_to_no_session_log(parts: Parts) -> None:
    hub = parts.hub()
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        assert hub.generation == 1
        [connection] = parts.subscriber.connections
        assert connection.options == {"ignore_subscribe_messages": True}
        assert connection.patterns == (keys.HITL_CHANNEL_PATTERN, keys.CANCEL_CHANNEL_PATTERN)
        assert connection.channels == []  # log growth is heard only for sessions followed here


# -- following remote logs -----------------------------------------------------------------------------
async def test_a_followed_log_is_subscribed_once_and_unsubscribed_after_its_last_follower(parts: Parts) -> None:
    hub = parts.hub()
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        [connection] = parts.subscriber.connections
        await hub.follow("sess_a")
        await hub.follow("sess_a")
        assert connection.channels == [keys.events_channel("sess_a")]
        assert hub.followed == 1
        hub.unfollow("sess_a")
        await _real_sleep(0.05)
        assert connection.channels == [keys.events_channel("sess_a")]  # one follower is left
        hub.unfollow("sess_a")
        assert hub.followed == 0
        await until(lambda: connection.channels == [])  # sent by the loop, between two reads


async def test_a_log_followed_again_before_the_unsubscribe_went_out_stays_subscribed(parts: Parts) -> None:
    hub = parts.hub()
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        [connection] = parts.subscriber.connections
        await hub.follow("sess_a")
        hub.unfollow("sess_a")
        await hub.follow("sess_a")
        await _real_sleep(1.2)  # longer than one read: the loop had its chance to unsubscribe
        assert connection.channels == [keys.events_channel("sess_a")]


async def test_a_reconnect_resubscribes_the_followed_logs_and_wakes_their_followers(parts: Parts) -> None:
    hub = parts.hub()
    await hub.follow("sess_a")  # before the first subscription: it is part of it
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        first = parts.subscriber.connections[0]
        assert first.channels == [keys.events_channel("sess_a")]
        await hub.follow("sess_b")
        parts.subscriber.read_steps = [RedisConnectionError("gone")]  # the next read breaks the connection
        await until(lambda: len(parts.subscriber.connections) == 2 and hub.subscribed.is_set())
        second = parts.subscriber.connections[1]
        assert sorted(second.channels) == [keys.events_channel("sess_a"), keys.events_channel("sess_b")]
    # A notification published while no connection listened is lost: the followers re-read.
    assert parts.grew.count("sess_a") >= 2 and "sess_b" in parts.grew


async def test_a_decision_stored_before_the_subscription_is_found_by_the_first_sweep(parts: Parts) -> None:
    hub = parts.hub()
    waiter = hub.register("sess_a", "req_a")
    parts.store.by_session["sess_a"] = approval("req_a")
    async with running(hub):
        assert await asyncio.wait_for(waiter.decision, WAIT) == approval("req_a")
    assert parts.store.sweeps == 1


# -- dispatching -------------------------------------------------------------------------------------
async def test_messages_are_routed_by_channel(parts: Parts) -> None:
    hub = parts.hub()
    waiter = hub.register("sess_a", "req_a")
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        parts.store.by_session["sess_a"] = approval("req_a")  # the record first, as main-service writes it
        await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_a"), approval("req_a").to_json()))
        await parts.subscriber.publish(pmessage(keys.events_channel("sess_b"), "1"))
        await parts.subscriber.publish(pmessage(keys.cancel_channel("sess_c"), "1"))
        await until(lambda: bool(parts.cancelled))
    assert waiter.decision.result() == approval("req_a")
    assert parts.grew == ["sess_b"]
    assert parts.cancelled == ["sess_c"]
    assert hub.ignored_signals == 0


@pytest.mark.parametrize(
    "message",
    [
        {"type": "psubscribe", "channel": keys.hitl_channel("sess_a"), "data": "x"},  # not a pmessage
        {"type": "subscribe", "channel": keys.events_channel("sess_a"), "data": 1},  # not a message
        pmessage(keys.events_channel("sess_a").encode(), "1"),  # channel not text
        pmessage(keys.events_channel("sess_a"), b"1"),  # data not text
        pmessage(keys.events_channel("sess_a"), None),
        {"type": "pmessage", "data": "1"},  # no channel
        {"type": "pmessage", "channel": keys.events_channel("sess_a")},  # no data
        pmessage("other:channel:sess_a", "1"),  # none of ours
        pmessage("x" + keys.cancel_channel("sess_a"), "1"),  # a prefix, not a substring
    ],
)
async def test_messages_that_are_not_ours_are_dropped_without_counting(parts: Parts, message: Message) -> None:
    hub = parts.hub()
    waiter = hub.register("sess_a", "req_a")
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        await parts.subscriber.publish(message)
        await parts.subscriber.publish(pmessage(keys.cancel_channel("sess_last"), "1"))  # dispatched after it
        await until(lambda: bool(parts.cancelled))
    assert parts.grew == []
    assert parts.cancelled == ["sess_last"]
    assert not waiter.decision.done()
    assert hub.ignored_signals == 0


async def test_a_decision_for_nobody_waiting_here_is_counted_as_ignored(parts: Parts) -> None:
    hub = parts.hub()
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_elsewhere"), approval("req_x").to_json()))
        await until(lambda: hub.ignored_signals == 1)


async def test_without_callbacks_log_growth_and_cancels_are_dropped(parts: Parts) -> None:
    hub = SignalHub(cast(Redis, parts.subscriber), parts.store, sweep_seconds=60, redis_timeout_seconds=0.5)
    waiter = hub.register("sess_a", "req_a")
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        await parts.subscriber.publish(pmessage(keys.events_channel("sess_a"), "1"))
        await parts.subscriber.publish(pmessage(keys.cancel_channel("sess_a"), "1"))
        parts.store.by_session["sess_a"] = approval("req_a")  # the record first, as main-service writes it
        await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_a"), approval("req_a").to_json()))
        await asyncio.wait_for(waiter.decision, WAIT)  # the loop went on past both
    assert hub.subscribed.is_set() and hub.generation == 1


# -- sweeping ----------------------------------------------------------------------------------------
async def test_waits_for_a_message_at_most_one_second_while_no_sweep_is_due(parts: Parts) -> None:
    hub = parts.hub(sweep_seconds=60)
    async with running(hub):
        await until(lambda: bool(parts.subscriber.connections and parts.subscriber.connections[0].waits))
        [connection] = parts.subscriber.connections
        assert 0.9 < connection.waits[0] <= 1.0
    assert parts.store.sweeps == 0  # nobody was waiting: no sweep asked Redis anything


async def test_sweeps_every_sweep_seconds_and_waits_no_longer_than_until_the_next_one(parts: Parts) -> None:
    hub = parts.hub(sweep_seconds=0.05)
    hub.register("sess_a", "req_a")
    async with running(hub):
        await until(lambda: parts.store.sweeps >= 4)
        connection = parts.subscriber.connections[0]
        assert all(0.0 <= wait <= 0.05 for wait in connection.waits)
    assert hub.generation == 1  # all on one subscription


async def test_no_periodic_sweep_before_sweep_seconds(parts: Parts) -> None:
    hub = parts.hub(sweep_seconds=60)
    hub.register("sess_a", "req_a")
    async with running(hub):
        await until(lambda: len(parts.subscriber.connections[0].waits) >= 1 if parts.subscriber.connections else False)
        await parts.subscriber.publish(pmessage(keys.events_channel("sess_b"), "1"))
        await until(lambda: parts.grew == ["sess_b"])
        await _real_sleep(0.1)
    assert parts.store.sweeps == 1  # only the one after subscribing


async def test_a_failed_sweep_keeps_the_subscription(parts: Parts) -> None:
    parts.store.fail_next = 2  # the sweep after subscribing, and the next periodic one
    hub = parts.hub(sweep_seconds=0.05)
    waiter = hub.register("sess_a", "req_a")
    async with running(hub):
        await until(lambda: parts.store.sweeps >= 3)
        assert hub.generation == 1 and hub.subscribed.is_set()
        assert len(parts.subscriber.connections) == 1
        parts.store.by_session["sess_a"] = approval("req_a")  # the record first, as main-service writes it
        await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_a"), approval("req_a").to_json()))
        await asyncio.wait_for(waiter.decision, WAIT)


# -- losing Redis --------------------------------------------------------------------------------------
async def test_a_lost_connection_is_closed_unsubscribes_bumps_the_generation_and_reconnects(
    parts: Parts, sleeps: list[float]
) -> None:
    parts.subscriber.read_steps = [RedisConnectionError("gone")]
    hub = parts.hub()
    async with running(hub):
        await until(lambda: len(parts.subscriber.connections) == 2 and hub.subscribed.is_set())
        assert hub.generation == 3  # subscribed (1), lost (2), subscribed again (3)
        assert parts.subscriber.connections[0].closed
        assert not parts.subscriber.connections[1].closed
    assert sleeps == [0.1]


async def test_subscribed_is_cleared_while_redis_is_away(parts: Parts, sleeps: list[float]) -> None:
    parts.subscriber.subscribe_steps = [Hang()]
    hub = parts.hub(redis_timeout=0.05)
    async with running(hub):
        await until(lambda: len(parts.subscriber.connections) == 2)
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        assert hub.generation == 2  # the timed-out subscribe counted as a loss
    assert sleeps == [0.1]


async def test_a_waiter_registered_before_a_loss_is_not_listened_throughout_after_the_reconnect(
    parts: Parts, sleeps: list[float]
) -> None:
    hub = parts.hub()
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        waiter = hub.register("sess_a", "req_a")
        assert hub.listened_throughout(waiter)
        parts.subscriber.read_steps = [RedisConnectionError("gone")]  # the read after the next message fails
        await parts.subscriber.publish(pmessage(keys.events_channel("sess_b"), "1"))
        await until(lambda: len(parts.subscriber.connections) == 2 and hub.subscribed.is_set())
        assert not hub.listened_throughout(waiter)
        assert parts.store.sweeps == 1  # the re-subscribe swept for what it may have missed (the first had nobody)
        assert hub.listened_throughout(hub.register("sess_c", "req_c"))


async def test_back_off_doubles_up_to_five_seconds_and_restarts_after_a_success(
    parts: Parts, sleeps: list[float]
) -> None:
    parts.subscriber.subscribe_steps = [RedisConnectionError("down")] * 7
    parts.subscriber.read_steps = [RedisConnectionError("gone again")]
    hub = parts.hub()
    async with running(hub):
        await until(lambda: len(parts.subscriber.connections) == 9 and hub.subscribed.is_set())
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 0.1]
    assert all(connection.closed for connection in parts.subscriber.connections[:8])


async def test_a_connection_that_cannot_be_closed_does_not_stop_the_loop(parts: Parts, sleeps: list[float]) -> None:
    parts.subscriber.read_steps = [RedisConnectionError("gone"), RedisConnectionError("gone")]
    parts.subscriber.close_steps = [RedisConnectionError("close failed"), Hang()]
    hub = parts.hub(redis_timeout=0.05)
    async with running(hub):
        await until(lambda: len(parts.subscriber.connections) == 3 and hub.subscribed.is_set())
    assert sleeps == [0.1, 0.1]  # each read failure followed a successful subscribe


async def test_cancelling_the_loop_closes_its_connection_and_ends_it(parts: Parts) -> None:
    hub = parts.hub()
    task = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.subscribed.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert parts.subscriber.connections[0].closed
    assert len(parts.subscriber.connections) == 1


async def test_callbacks_given_to_the_constructor_are_the_ones_called(parts: Parts) -> None:
    hub = SignalHub(cast(Redis, parts.subscriber), parts.store, sweep_seconds=60, redis_timeout_seconds=0.5,
                    on_log_grew=parts.grew.append, on_cancel=parts.cancelled.append)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        await parts.subscriber.publish(pmessage(keys.events_channel("sess_a"), "1"))
        await parts.subscriber.publish(pmessage(keys.cancel_channel("sess_b"), "1"))
        await until(lambda: bool(parts.cancelled))
    assert (parts.grew, parts.cancelled) == (["sess_a"], ["sess_b"])


async def test_a_cancel_swallowed_by_a_read_still_stops_the_loop(parts: Parts) -> None:
    parts.subscriber.read_steps = [SwallowCancel()]
    hub = parts.hub()
    task = asyncio.create_task(hub.run())
    await until(lambda: bool(parts.subscriber.connections and parts.subscriber.connections[0].waits))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert len(parts.subscriber.connections) == 1 and parts.subscriber.connections[0].closed


async def test_a_cancel_swallowed_by_a_failing_subscribe_stops_the_loop_before_it_reconnects(
    parts: Parts, sleeps: list[float]
) -> None:
    parts.subscriber.subscribe_steps = [SwallowCancel(then=RedisConnectionError("gone"))]
    hub = parts.hub(redis_timeout=WAIT * 2)  # the cancel, not the subscribe's own bound, ends the wait
    task = asyncio.create_task(hub.run())
    await until(lambda: bool(parts.subscriber.connections))
    await _real_sleep(0.01)  # in psubscribe by now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert len(parts.subscriber.connections) == 1
    assert not hub.subscribed.is_set()


@dataclass
class HeldReads:
    """A DecisionSource whose reads wait until the test lets them go (or for ever)."""

    reading: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    by_session: dict[str, Signal] = field(default_factory=dict)

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.reading.set()
        await self.go.wait()
        return [self.by_session.get(sid) for sid, _ in pending]


async def test_a_woken_sessions_read_does_not_hold_up_the_messages_behind_it(parts: Parts) -> None:
    """Issue 10: a message only wakes its session, whose record is read off the subscriber loop."""
    store = HeldReads(by_session={"sess_a": approval("req_a")})
    hub = SignalHub(cast(Redis, parts.subscriber), store, sweep_seconds=60, redis_timeout_seconds=WAIT,
                    on_cancel=parts.cancelled.append)
    async with running(hub):
        await asyncio.wait_for(hub.subscribed.wait(), WAIT)
        waiter = hub.register("sess_a", "req_a")
        await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_a"), approval("req_a").to_json()))
        await asyncio.wait_for(store.reading.wait(), WAIT)
        await parts.subscriber.publish(pmessage(keys.cancel_channel("sess_b"), "1"))
        await until(lambda: parts.cancelled == ["sess_b"])  # dispatched while the read still waits
        assert not waiter.decision.done()
        store.go.set()
        assert await asyncio.wait_for(waiter.decision, WAIT) == approval("req_a")


async def test_stopping_the_hub_stops_a_read_of_a_woken_session(parts: Parts) -> None:
    store = HeldReads()
    hub = SignalHub(cast(Redis, parts.subscriber), store, sweep_seconds=60, redis_timeout_seconds=WAIT)
    task = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.subscribed.wait(), WAIT)
    hub.register("sess_a", "req_a")
    await parts.subscriber.publish(pmessage(keys.hitl_channel("sess_a"), "{}"))
    await asyncio.wait_for(store.reading.wait(), WAIT)
    assert hub.reading
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await until(lambda: not hub.reading)  # the read was cancelled with the hub, not left hanging
