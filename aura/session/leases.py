"""Who drives which session: this instance's heartbeat, and adopting the sessions of instances that died.

Every instance keeps one heartbeat key, lists itself in the instance registry,
and keeps the set of sessions it drives. Every ``lease_seconds / 3`` the keeper
renews the heartbeat and looks for registered instances without one; it adopts
their sessions from their sets, a batch at a time, with a compare-and-set on each
lease, until the set is empty, and then drops the dead instance from the registry.
The cost of a round is therefore one command per registered instance while all
are alive, whatever the number of sessions, and adoption takes as long as the
dead instance's sessions take to load, not a fixed page per round.

An instance whose own heartbeat lapsed (a pause, an outage) first checks which of
its sessions others took, and stops driving those. A session whose run stopped
because Redis was away (stranded) is picked up again here once Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from aura.errors import StoreUnavailable
from aura.metrics import AdoptionReason, Metrics, unserved
from aura.session.registry import SessionRegistry
from aura.session.session import Session
from aura.session.snapshot import Snapshot, SnapshotUnreadable, decode
from aura.session.store import SessionStore
from aura.storage.calls import bounded, stop_if_cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")

ADOPTION_BATCH: Final = 500  # sessions taken from a dead instance's set per step; steps go on until it is empty


class LeaseKeeper:
    def __init__(
        self,
        store: SessionStore,
        registry: SessionRegistry,
        *,
        lease_seconds: float,
        redis_timeout_seconds: float,
        on_adopted: Callable[[Session], object],
        on_taken: Callable[[Session], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._store = store
        self._registry = registry
        self._interval = lease_seconds / 3
        self._lease_seconds = lease_seconds
        self._timeout = redis_timeout_seconds
        self._on_adopted = on_adopted  # start the adopted session's run
        self._on_taken = on_taken  # stop driving a session another instance took
        self._stranded: set[str] = set()
        self._last_heartbeat: float | None = None  # loop time of the last heartbeat Redis took
        self.stopped = False
        self.adopted = 0  # sessions adopted since start-up, for tests and the benchmark

    @property
    def heartbeat_fresh(self) -> bool:
        """True while the last heartbeat Redis took is younger than a lease: peers see us alive."""
        last = self._last_heartbeat
        return last is not None and asyncio.get_running_loop().time() - last < self._lease_seconds

    def strand(self, session_id: str) -> None:
        """A run stopped because Redis was away; its lease is still ours: drive it again when Redis is back."""
        self._stranded.add(session_id)

    async def run(self) -> None:
        """Keep the heartbeat and adopt, forever; cancel to stop."""
        task = asyncio.current_task()
        while True:
            stop_if_cancelled(task)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                log.warning("lease upkeep failed (%s); retrying", exc)
            except Exception:  # supervised: a bug in one round must not end the heartbeat
                log.exception("lease upkeep failed")
            await asyncio.sleep(self._interval)

    async def round(self) -> None:
        if self.stopped:
            return
        store = self._store
        continuous = await self._call(store.heartbeat(), "heartbeat")
        self._last_heartbeat = asyncio.get_running_loop().time()
        local = self._registry.all()
        if not continuous and local:
            # Our heartbeat lapsed: others may have taken sessions over.
            owners = await self._call(store.owners([s.id for s in local]), "read leases")
            for session, owner in zip(local, owners, strict=True):
                if owner is not None and owner != store.instance_id:  # None: not written yet, or nobody's
                    log.warning("session %s: taken over by %s; stopping here", session.id, owner)
                    self._on_taken(session)
        if self._stranded:
            await self._drive_stranded()
        others = await self._call(store.instances(), "read instances") - {store.instance_id}
        alive = await self._call(store.alive(others), "read heartbeats")
        # One budget for the whole round: the next heartbeat must not wait for several dead instances.
        deadline = asyncio.get_running_loop().time() + self._interval
        for dead in sorted(others - alive):
            if not await self._adopt_from(dead, deadline):
                return  # the heartbeat is due; the next round goes on

    async def _drive_stranded(self) -> None:
        """Drive again the stranded sessions whose lease is still ours; forgotten only once that worked."""
        stranded = sorted(sid for sid in self._stranded if self._registry.local(sid) is None)
        owners = await self._call(self._store.owners(stranded), "read leases")
        ours = [sid for sid, owner in zip(stranded, owners, strict=True) if owner == self._store.instance_id]
        await self._call(self._store.claim(ours), "claim sessions")  # its end may have taken it out of the set
        await self._adopt(ours, AdoptionReason.STRANDED)
        self._stranded.difference_update(stranded)

    async def _adopt_from(self, dead: str, deadline: float) -> bool:
        """Take over ``dead``'s sessions, batch after batch, until its set is empty (True) or ``deadline``."""
        store = self._store
        while not self.stopped:
            batch = await self._call(store.sessions_of(dead, ADOPTION_BATCH), "read sessions of an instance")
            if not batch:
                await self._call(store.forget_instance(dead), "forget instance")
                return True
            owners = await self._call(store.owners(batch), "read leases")
            # Its own, or nobody's (released, or ended before it left the set), or already ours (a round
            # that took the lease and failed before the session was driven); others' are not ours to take.
            candidates = [(sid, owner) for sid, owner in zip(batch, owners, strict=True)
                          if owner in (dead, None, store.instance_id) and self._registry.local(sid) is None]
            ids = [sid for sid, _ in candidates]
            # Listed as ours before the leases move: a crash between leaves the session findable.
            await self._call(store.claim(ids), "claim sessions")
            won = await self._call(store.take_over(ids, [owner for _, owner in candidates]), "take over")
            lost = [sid for sid, taken in zip(ids, won, strict=True) if not taken]
            await self._call(store.disown(store.instance_id, lost), "disown sessions")
            await self._adopt([sid for sid, taken in zip(ids, won, strict=True) if taken], AdoptionReason.INSTANCE_DIED)
            await self._call(store.disown(dead, batch), "disown sessions")
            if asyncio.get_running_loop().time() >= deadline:
                return False
        return False

    async def _adopt(self, session_ids: Sequence[str], reason: AdoptionReason) -> None:
        """Drive sessions whose leases are ours; those ended or expired are let go."""
        gone: list[str] = []
        loaded = await self._call(self._store.load_many(session_ids), "load snapshots") if session_ids else []
        for session_id, fields in zip(session_ids, loaded, strict=True):
            snapshot = _decoded(fields)
            if snapshot is None or snapshot.is_final or self.stopped:
                gone.append(session_id)
                continue
            session = self._registry.adopt(snapshot)
            self.adopted += 1
            self._metrics.adopted(reason)
            log.info("adopted session %s in state %s at event %d", session_id, snapshot.state.value, snapshot.seq)
            self._on_adopted(session)
        if gone:
            await self._call(self._store.release(gone), "release leases")
            await self._call(self._store.disown(self._store.instance_id, gone), "disown sessions")

    async def release_all(self, sessions: list[Session]) -> None:
        """Let other instances adopt at once (draining): leases and the heartbeat go."""
        self.stopped = True
        await self._call(self._store.release([s.id for s in sessions]), "release leases")
        await self._call(self._store.stop_heartbeat(), "stop heartbeat")

    async def _call(self, call: Awaitable[T], operation: str) -> T:
        return await bounded(call, self._timeout, operation)


def _decoded(fields: dict[str, str] | None) -> Snapshot | None:
    """The snapshot, or None when it expired or cannot be a session's (which must not block the others)."""
    if fields is None:
        return None
    try:
        return decode(fields)
    except SnapshotUnreadable as exc:
        log.error("%s; not adopting it", exc)
        return None
