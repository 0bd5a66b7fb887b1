"""The one log writer of the process: it group-commits the events of every session.

A session's events are queued by :meth:`LogWriter.emit` and written by one
flusher task: each round takes what every session queued and sends it to Redis
in one pipeline (one fenced script call per session). Events queued while a
round is in flight go in the next one, with each session's snapshot as it is
then. An event reaches a follower only after Redis acknowledged it (CONTRACT
§3.6: Aura is the replay owner), so every follower on every replica sees the
same sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from redis.exceptions import OutOfMemoryError, ReadOnlyError

from aura.errors import AuraError, LeaseLost, StoreUnavailable
from aura.ids import EventId
from aura.metrics import Metrics, unserved
from aura.session.events import AgentEvent, EventData, EventType, Payload
from aura.session.notifier import Notifier
from aura.session.replay import ReplayCache
from aura.session.session import Session
from aura.session.snapshot import Fields, encode_finished, encode_progress
from aura.session.store import Append
from aura.storage.calls import bounded

log = logging.getLogger(__name__)

# About 25 s of retries when Redis is away; a round that still fails fails its sessions.
# Answers of one script call that mean "not now" rather than "never" (after a failover, a full Redis).
RETRYABLE_ANSWERS: Final = (ReadOnlyError, OutOfMemoryError)
RETRY_BACKOFF_SECONDS: Final = (0.1, 0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)


class LogStore(Protocol):
    """Where the writer commits (:class:`aura.session.store.SessionStore` in production)."""

    async def commit(self, appends: Sequence[Append]) -> list[Exception | None]: ...


@dataclass(eq=False, slots=True)
class _Log:
    """One session's part of the writer: what is queued, and what the last round said."""

    session: Session
    next_seq: int
    queued: list[AgentEvent] = field(default_factory=list)
    end: bool = False
    create: Fields | None = None  # a new session's identity, stored with its first commit
    stored_plan_version: int = 0
    committed: asyncio.Future[None] | None = None  # resolved when the round carrying the queue ends
    error: Exception | None = None


class LogWriter:
    def __init__(
        self,
        store: LogStore,
        notifier: Notifier,
        replay: ReplayCache,
        *,
        retry_backoff: Sequence[float] = RETRY_BACKOFF_SECONDS,
        redis_timeout_seconds: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._store = store
        self._notifier = notifier
        self._replay = replay
        self._backoff = tuple(retry_backoff)
        self._timeout = redis_timeout_seconds
        self._logs: dict[str, _Log] = {}
        self._queue: dict[str, _Log] = {}
        self._round: asyncio.Future[None] | None = None  # the round the next flush completes
        self._flusher: asyncio.Task[None] | None = None
        self.rounds = 0  # commits made, for tests and the benchmark

    # -- a session's lifetime in the writer -------------------------------------------------
    def open(self, session: Session) -> None:
        """Start writing ``session``'s log after the last event it already has (an adopted session)."""
        self._logs[session.id] = _Log(session, session.resumed_at_seq + 1, stored_plan_version=session.plan_version)
        self._replay.track(session.id, session.resumed_at_seq)

    async def create(self, session: Session, identity: Fields, *, timeout: float) -> None:
        """Store a new session (lease, snapshot, its instance's set, its quotas) in the next round, and
        wait for it.

        Creations share the round trip of every other session's events. A creation is never
        retried: the caller is told at once that Redis is away (StoreUnavailable) or that a quota
        refused it (TooManyRequests).
        """
        self.open(session)
        entry = self._logs[session.id]
        entry.create = identity
        self._enqueue(entry)
        try:
            async with asyncio.timeout(timeout):
                await self.sync(session)
        except TimeoutError as exc:
            entry.error = StoreUnavailable("create session", exc)
            raise entry.error from exc

    def release(self, session: Session) -> None:
        """Stop tracking ``session`` here: followers read its log from Redis from now on."""
        entry = self._logs.get(session.id)
        if entry is not None and entry.session is session:
            del self._logs[session.id]
            self._replay.drop(session.id)

    def idle(self, session: Session) -> None:
        """The session will wait (minutes, thousands at once): keep none of its frames meanwhile."""
        self._replay.forget_frames(session.id)

    # -- writing -------------------------------------------------------------------------
    def emit(self, session: Session, type_: EventType, data: Payload) -> AgentEvent:
        """Queue one event; it is visible to followers once Redis has it. Raises what stopped the log."""
        entry = self._entry(session)
        event = AgentEvent.create(EventId(session.id, entry.next_seq), type_, data)
        entry.next_seq += 1
        entry.queued.append(event)
        self._enqueue(entry)
        return event

    def emit_all(self, session: Session, items: Sequence[EventData]) -> None:
        for type_, data in items:
            self.emit(session, type_, data)

    async def sync(self, session: Session) -> None:
        """Wait until everything ``session`` emitted is in Redis; raise what stopped the writes."""
        entry = self._entry(session)
        while entry.committed is not None and not entry.committed.done():
            await asyncio.shield(entry.committed)
        if entry.error is not None:
            raise entry.error

    async def close(self, session: Session) -> None:
        """Mark the end of the log, after everything emitted: followers then get [DONE]."""
        entry = self._entry(session)
        entry.end = True
        self._enqueue(entry)
        await self.sync(session)

    def _entry(self, session: Session) -> _Log:
        entry = self._logs.get(session.id)
        if entry is None or entry.session is not session:
            raise LeaseLost(session.id)  # released: another instance (or nobody) drives it now
        if entry.error is not None:
            raise entry.error
        return entry

    def _enqueue(self, entry: _Log) -> None:
        self._queue[entry.session.id] = entry
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
        entry.committed = self._round
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="aura-log-writer")

    # -- the flusher ---------------------------------------------------------------------
    async def _flush(self) -> None:
        while self._queue:
            # A session released or failed since it queued (a creation its client gave up on, a
            # log whose earlier round failed) writes nothing more: no orphan, no hole in the log.
            batch = [e for e in self._queue.values() if e.error is None and self._logs.get(e.session.id) is e]
            self._queue = {}
            done, self._round = self._round, None
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug, not Redis: fail the round's sessions rather than lose events quietly
                log.exception("a commit of %d session(s) failed", len(batch))
                for entry in batch:
                    entry.error = _as_aura_error(exc)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _commit(self, batch: list[_Log]) -> None:
        appends: list[Append] = []
        versions: list[int] = []
        taken: list[list[AgentEvent]] = []
        for entry in batch:
            events, entry.queued = entry.queued, []
            session = entry.session
            last = events[-1].seq if events else entry.next_seq - 1
            dropped: list[str] = []
            if entry.end:  # the session's last write: what only a live run needs goes, in the same call
                fields, dropped = encode_finished(session.snapshot(last))
            else:
                with_plan = session.plan_version != entry.stored_plan_version
                fields = encode_progress(session.snapshot(last), with_plan=with_plan)
            identity, entry.create = entry.create, None
            if identity is not None:
                fields = {**identity, **fields}
            frames = [(e.seq, e.frame.decode("ascii")) for e in events]
            owner = session.owner if entry.end or identity is not None else None  # quotas count it then
            appends.append(Append(session.id, frames, fields, last, entry.end, identity is not None, dropped, owner))
            versions.append(session.plan_version)
            taken.append(events)
        started = time.perf_counter()
        failures = await self._commit_with_retries(appends)
        seconds = time.perf_counter() - started
        self.rounds += 1
        written = 0
        for entry, append, failure, version, events in zip(batch, appends, failures, versions, taken, strict=True):
            sid = entry.session.id
            if failure is not None:
                entry.error = _as_aura_error(failure)
                continue
            entry.stored_plan_version = version
            if events:
                written += len(events)
                self._replay.add(sid, [(e.seq, e.frame) for e in events])
            if append.end:  # as it was taken: close() may have come since
                self._replay.end(sid)
            self._notifier.wake(sid)
        self._metrics.committed(written, seconds)

    async def _commit_with_retries(self, appends: list[Append]) -> list[Exception | None]:
        """Each append's outcome. Redis failures are retried for about 25 s, but not for creations:
        the client waiting for a new session is answered at once."""
        results: list[Exception | None] = [None] * len(appends)
        pending = list(range(len(appends)))
        for delay in (*self._backoff, None):
            try:
                answers = await bounded(self._store.commit([appends[i] for i in pending]), self._timeout, "append")
            except StoreUnavailable as failure:
                for i in pending:
                    if appends[i].create or delay is None:
                        results[i] = failure
                pending = [i for i in pending if results[i] is None]
                if not pending or delay is None:
                    return results
                log.warning("Redis refused a commit of %d session(s) (%s); retrying in %.1f s",
                            len(pending), failure, delay)
                await asyncio.sleep(delay)
                continue
            again: list[int] = []
            for i, answer in zip(pending, answers, strict=True):
                if isinstance(answer, RETRYABLE_ANSWERS) and not appends[i].create and delay is not None:
                    again.append(i)  # a replica, or a full Redis: retried like a lost connection
                else:
                    results[i] = answer
            if not again or delay is None:  # nothing to retry, or no attempt left
                return results
            pending = again
            log.warning("Redis refused %d session(s) of a commit (%s); retrying in %.1f s",
                        len(again), answers[0] if len(answers) == 1 else "READONLY/OOM", delay)
            await asyncio.sleep(delay)
        return results

    async def aclose(self) -> None:
        """Stop the flusher (at shutdown, after the runs ended)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher


def _as_aura_error(failure: Exception) -> Exception:
    """Aura's own (LeaseLost, StoreUnavailable, a quota's TooManyRequests) as they are; anything else
    Redis said for one call, mapped."""
    if isinstance(failure, AuraError):  # LeaseLost, StoreUnavailable, TooManyRequests (a quota)
        return failure
    error = StoreUnavailable("append", failure)
    error.__cause__ = failure
    return error
