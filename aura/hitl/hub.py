"""The one Redis subscriber per process, and the sessions waiting on it.

A session registers its waiter *before* it writes ``hitl:request`` (so the
fastest possible approval already has somewhere to land), and the hub listens on
``hitl:channel:*`` with a single connection, whatever the number of sessions.
Pub/Sub is at-most-once, so the hub also sweeps Redis for decisions of every
waiting session after each (re)subscribe and every ``sweep_seconds``.

A message is only a wake-up (issue 10): whatever it says, the woken session reads
its ``hitl:request`` record, which main-service writes before it publishes
(CONTRACT §4.1 step 6), and follows that alone. A bare PUBLISH therefore approves
nothing, and a duplicate costs one read. The reads run off the subscriber loop,
in batches, so a slow Redis never holds up the messages behind them.

The same connection carries "the log grew" for the sessions that a stream here
follows while another replica drives them: one channel each, subscribed while
followed, so a replica hears only what it follows, not every session of the fleet.
Classic Pub/Sub: a Redis Cluster broadcasts it to every node, so one connection to
any node hears main-service's publishes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from aura.errors import MalformedSignal
from aura.metrics import Metrics, unserved
from aura.storage import keys
from aura.storage.calls import bounded, stop_if_cancelled
from aura.hitl.signals import Signal, parse_signal

log = logging.getLogger(__name__)

_CHANNEL_PREFIX = keys.HITL_CHANNEL_PREFIX
_EVENTS_PREFIX = keys.EVENTS_CHANNEL_PREFIX
_SUBSCRIBE_CHUNK = 500  # channels per SUBSCRIBE when a reconnect restores them
_CANCEL_PREFIX = keys.CANCEL_CHANNEL_PREFIX
_MAX_BACKOFF_SECONDS = 5.0
_WAKE_READ_CHUNK = 500  # woken sessions whose records are read in one round trip


class DecisionSource(Protocol):
    """Where decisions are read (:class:`aura.hitl.store.HitlStore` in production).

    For each ``(sessionId, requestId)``: the decision its ``hitl:request`` record holds, or None
    while it holds none (pending, gone, another session's, corrupt). Never a message's word.
    """

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]: ...


@dataclass(slots=True)
class _Wakeup:
    waiter: ApprovalWaiter
    claim: Signal | None  # what the last message said, if it parsed: for the log only, it decides nothing


@dataclass(eq=False)
class ApprovalWaiter:
    session_id: str
    request_id: str
    generation: int  # the hub's subscription generation at registration; -1 if it was not listening
    decision: asyncio.Future[Signal] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def offer(self, signal: Signal) -> bool:
        """Accept the first decision for this request; stale and duplicate ones are no-ops."""
        if signal.request_id != self.request_id or self.decision.done():
            return False
        self.decision.set_result(signal)
        return True


class SignalHub:
    def __init__(
        self,
        subscriber: Redis,
        store: DecisionSource,
        *,
        sweep_seconds: float,
        redis_timeout_seconds: float,
        on_log_grew: Callable[[str], None] | None = None,
        on_cancel: Callable[[str], None] | None = None,
        before_subscribe: Callable[[], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._subscriber = subscriber
        self._before_subscribe = before_subscribe  # e.g. learn a cluster's slots, which its pubsub needs
        self._on_log_grew = on_log_grew
        self.on_cancel = on_cancel  # set by the composition root once the runs exist
        self._store = store
        self._sweep_seconds = sweep_seconds
        self._timeout = redis_timeout_seconds
        self._waiters: dict[str, ApprovalWaiter] = {}
        self._woken: dict[str, _Wakeup] = {}  # by session: woken, record not read yet (duplicates coalesce)
        self._reader: asyncio.Task[None] | None = None  # reads the woken sessions' records, while there are any
        self.subscribed = asyncio.Event()
        self.generation = 0  # bumped on every (re)subscribe and every loss
        self.ignored_signals = 0  # messages that woke nobody: no session waits here, or it has its decision
        self.wakeups = 0  # messages that woke a waiting session
        self.unconfirmed_wakeups = 0  # reads after a wake-up whose record held no decision (a bare PUBLISH, ...)
        self._followed: Counter[str] = Counter()  # session id -> streams here following its remote log
        self._to_unsubscribe: set[str] = set()
        self._pubsub: PubSub | None = None  # the live subscription, once (re)subscribed
        self._reconnect = False

    # -- remote logs followed here ---------------------------------------------------
    async def follow(self, session_id: str) -> None:
        """Hear when ``session_id``'s log grows on another replica (until :meth:`unfollow`).

        Best effort: a subscribe that fails is restored by the next reconnect, and a
        follower re-reads the log at every heartbeat anyway.
        """
        self._followed[session_id] += 1
        if self._followed[session_id] > 1:
            return
        self._to_unsubscribe.discard(session_id)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the next (re)subscribe includes it
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(keys.events_channel(session_id))
        except Exception as exc:
            log.debug("subscribing to %s failed (%s: %s); a re-read covers it", session_id, type(exc).__name__, exc)

    def unfollow(self, session_id: str) -> None:
        """One follower fewer; the last one's unsubscribe is sent by the subscriber loop."""
        left = self._followed[session_id] - 1
        if left > 0:
            self._followed[session_id] = left
            return
        del self._followed[session_id]
        self._to_unsubscribe.add(session_id)

    def reconnect(self) -> None:
        """Subscribe again, on a new connection (the primary moved: the old one hears nothing more)."""
        self._reconnect = True

    @property
    def followed(self) -> int:
        """How many remote logs this process follows right now."""
        return len(self._followed)

    # -- waiters -----------------------------------------------------------------
    def register(self, session_id: str, request_id: str) -> ApprovalWaiter:
        waiter = ApprovalWaiter(session_id, request_id, self.generation if self.subscribed.is_set() else -1)
        self._waiters[session_id] = waiter
        return waiter

    def unregister(self, waiter: ApprovalWaiter) -> None:
        if self._waiters.get(waiter.session_id) is waiter:
            del self._waiters[waiter.session_id]

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def deliver(self, session_id: str, raw: str) -> bool:
        """A message on ``hitl:channel:{session_id}``: wake its waiting session, which then reads its record.

        True if a session waits here for a decision (its record is read soon), False if the message
        woke nobody. What the message says decides nothing (issue 10; CONTRACT §4.1 step 6: the record
        is written first); it is parsed only to say in the log what it claimed.
        """
        waiter = self._waiters.get(session_id)
        if waiter is None or waiter.decision.done():
            self.ignored_signals += 1  # another replica's session, or a duplicate (CONTRACT §4.4)
            log.debug("HITL message for %s woke nobody here", session_id)
            return False
        try:
            claim: Signal | None = parse_signal(raw)
        except MalformedSignal as exc:
            claim = None
            log.debug("HITL message for %s is not a signal (%s); its request is read all the same", session_id, exc)
        self.wakeups += 1
        self._woken[session_id] = _Wakeup(waiter, claim)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_woken(), name="aura-hitl-wakeups")
        return True

    @property
    def reading(self) -> bool:
        """True while woken sessions' records are still to be read (or being read)."""
        return bool(self._woken) or (self._reader is not None and not self._reader.done())

    async def _read_woken(self) -> None:
        """Read the records of the woken sessions, a batch per round trip, until none is left.

        A failed read is logged and left to the sweep, which reads every waiting session anyway.
        """
        task = asyncio.current_task()
        while self._woken:
            stop_if_cancelled(task)
            batch = [self._woken.pop(sid) for sid in list(self._woken)[:_WAKE_READ_CHUNK]]
            # A waiter that ended or was replaced since it was woken needs nothing read.
            batch = [w for w in batch if self._waiters.get(w.waiter.session_id) is w.waiter]
            try:
                await self.recheck([w.waiter for w in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervised: a failure here must not strand later wake-ups
                log.warning("reading %d woken HITL request(s) failed (%s: %s); the sweep reads them again",
                            len(batch), type(exc).__name__, exc)
                continue
            for wakeup in batch:
                if not wakeup.waiter.decision.done():
                    self._unconfirmed(wakeup)

    def _unconfirmed(self, wakeup: _Wakeup) -> None:
        self.unconfirmed_wakeups += 1
        waiter, claim = wakeup.waiter, wakeup.claim
        if claim is not None and claim.request_id == waiter.request_id:
            # main-service publishes only after it wrote the record: a claim the record lacks is nobody's.
            log.warning("hitl:channel:%s announced %s of %s, which its record does not hold; still waiting",
                        waiter.session_id, claim.decision.value, waiter.request_id)
        else:
            log.info("woken on hitl:channel:%s, but %s holds no decision; still waiting",
                     waiter.session_id, waiter.request_id)

    def listened_throughout(self, waiter: ApprovalWaiter) -> bool:
        """True if the subscription never lapsed since ``waiter`` registered: nothing can be missed."""
        return self.subscribed.is_set() and waiter.generation == self.generation

    async def recheck(self, waiters: list[ApprovalWaiter] | None = None) -> int:
        """Read the waiting sessions' records (all, or ``waiters``) and hand each decision found to its waiter;
        return how many were handed over.

        What a wake-up, a (re)subscribe and the sweep do: the record alone decides (issue 10).
        """
        pending = [w for w in (waiters if waiters is not None else list(self._waiters.values())) if not w.decision.done()]
        if not pending:
            return 0
        pairs = [(w.session_id, w.request_id) for w in pending]
        found = await bounded(self._store.decisions_for(pairs), self._timeout, "re-check decisions")
        handed = 0
        for waiter, signal in zip(pending, found, strict=True):
            if signal is not None and waiter.offer(signal):
                handed += 1
        return handed

    # -- the subscriber loop --------------------------------------------------------
    async def run(self) -> None:
        """Subscribe and dispatch forever; reconnect with backoff. Cancel to stop."""
        try:
            await self._listen()
        finally:
            if self._reader is not None:
                self._reader.cancel()  # the hub stops: nobody waits here for what it would read

    async def _listen(self) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        while True:
            stop_if_cancelled(task)
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._timeout):
                    if self._before_subscribe is not None:
                        await self._before_subscribe()
                    await pubsub.psubscribe(keys.HITL_CHANNEL_PATTERN, keys.CANCEL_CHANNEL_PATTERN)
                    self._pubsub = pubsub  # before the restore: a follow() meanwhile subscribes itself
                    await self._resubscribe(pubsub)
                self.generation += 1
                self.subscribed.set()
                backoff = 0.1
                await self._sweep()  # whatever was published while we were not listening
                next_sweep = loop.time() + self._sweep_seconds
                while True:
                    stop_if_cancelled(task)
                    if self._reconnect:
                        self._reconnect = False
                        raise ConnectionError("the Redis primary moved")
                    if self._to_unsubscribe:
                        await self._unsubscribe(pubsub)
                    wait = max(0.0, min(1.0, next_sweep - loop.time()))
                    message = await pubsub.get_message(timeout=wait)
                    if message is not None:
                        self._dispatch(message)
                    if loop.time() >= next_sweep:
                        await self._sweep()
                        next_sweep = loop.time() + self._sweep_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervised: any failure of the subscription means reconnect
                self.generation += 1
                self.subscribed.clear()
                log.warning("HITL subscriber lost Redis (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _resubscribe(self, pubsub: PubSub) -> None:
        """Restore the followed channels; their followers re-read, as a notification may be lost."""
        self._to_unsubscribe.clear()
        followed = list(self._followed)
        for start in range(0, len(followed), _SUBSCRIBE_CHUNK):
            await pubsub.subscribe(*(keys.events_channel(sid) for sid in followed[start : start + _SUBSCRIBE_CHUNK]))
        if self._on_log_grew is not None:
            for session_id in followed:
                self._on_log_grew(session_id)

    async def _unsubscribe(self, pubsub: PubSub) -> None:
        gone = [sid for sid in self._to_unsubscribe if sid not in self._followed]
        self._to_unsubscribe.clear()
        if gone:
            async with asyncio.timeout(self._timeout):
                await pubsub.unsubscribe(*(keys.events_channel(sid) for sid in gone))

    async def _sweep(self) -> None:
        """A failed sweep is retried at the next one; it must not tear down the subscription."""
        try:
            found = await self.recheck()
        except Exception as exc:
            log.warning("HITL sweep failed (%s: %s); the next sweep retries", type(exc).__name__, exc)
        else:
            self._metrics.swept(found)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") not in ("pmessage", "message"):
            return
        channel = message.get("channel")
        data = message.get("data")
        if not isinstance(channel, str) or not isinstance(data, str):
            return
        if channel.startswith(_CHANNEL_PREFIX):
            self.deliver(channel[len(_CHANNEL_PREFIX) :], data)
        elif channel.startswith(_EVENTS_PREFIX) and self._on_log_grew is not None:
            self._on_log_grew(keys.channel_session(_EVENTS_PREFIX, channel))
        elif channel.startswith(_CANCEL_PREFIX) and self.on_cancel is not None:
            self.on_cancel(keys.channel_session(_CANCEL_PREFIX, channel))

