"""Who drives which session: this instance's heartbeat, and adopting sessions whose driver is gone.

Every ``lease_seconds / 3`` the keeper renews the instance's one heartbeat key,
scans one page of the live set, and takes over (compare-and-set on the lease)
each session whose driver has no heartbeat. If its own heartbeat had lapsed (a
pause, an outage) it first checks which of its sessions others took, and stops
driving those.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from aura.errors import StoreUnavailable
from aura.session.registry import SessionRegistry
from aura.session.session import Session
from aura.session.snapshot import SnapshotUnreadable
from aura.session.store import SessionStore
from aura.storage.calls import bounded, stop_if_cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")

ADOPTION_PAGE: Final = 500


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
    ) -> None:
        self._store = store
        self._registry = registry
        self._interval = lease_seconds / 3
        self._timeout = redis_timeout_seconds
        self._on_adopted = on_adopted  # start the adopted session's run
        self._on_taken = on_taken  # stop driving a session another instance took
        self._scan_from = 0
        self.stopped = False

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
            except Exception:
                log.exception("lease upkeep failed")
            await asyncio.sleep(self._interval)

    async def round(self) -> None:
        if self.stopped:
            return
        store = self._store
        continuous = await self._call(store.heartbeat(), "heartbeat")
        local = self._registry.all()
        if not continuous and local:
            # Our heartbeat lapsed: others may have taken sessions over.
            owners = await self._call(store.owners([s.id for s in local]), "read leases")
            for session, owner in zip(local, owners, strict=True):
                if owner is not None and owner != store.instance_id:  # None: not written yet, or nobody's
                    log.warning("session %s: taken over by %s; stopping here", session.id, owner)
                    self._on_taken(session)
        # One page of the live set per round, so a large set costs a bounded amount each time.
        page = await self._call(store.live_sessions(self._scan_from, ADOPTION_PAGE), "scan live sessions")
        self._scan_from = 0 if len(page) < ADOPTION_PAGE else self._scan_from + len(page)
        candidates = [sid for sid in page if self._registry.local(sid) is None]
        owners = await self._call(store.owners(candidates), "read leases")
        others = {o for o in owners if o is not None and o != store.instance_id}
        alive = await self._call(store.alive(others), "read heartbeats") if others else set()
        for session_id, owner in zip(candidates, owners, strict=True):
            if owner in alive or self.stopped:
                continue
            if await self._call(store.take_over(session_id, owner), "take over"):
                await self._adopt(session_id)

    async def _adopt(self, session_id: str) -> None:
        try:
            snapshot = await self._call(self._store.load_snapshot(session_id), "load snapshot")
        except SnapshotUnreadable as exc:
            # An unreadable snapshot must not block the adoption of every session after it.
            log.error("%s; dropping it from the live set", exc)
            snapshot = None
        if snapshot is None or snapshot.is_final:
            await self._call(self._store.forget(session_id), "forget session")
            await self._call(self._store.release(session_id), "release lease")
            return
        session = self._registry.adopt(snapshot)
        log.info("adopted session %s in state %s at event %d", session_id, snapshot.state.value, snapshot.seq)
        self._on_adopted(session)

    async def release_all(self, sessions: list[Session]) -> None:
        """Let other instances adopt at once (draining): leases and the heartbeat go."""
        self.stopped = True
        for session in sessions:
            await self._call(self._store.release(session.id), "release lease")
        await self._call(self._store.stop_heartbeat(), "stop heartbeat")

    async def _call(self, call: Awaitable[T], operation: str) -> T:
        return await bounded(call, self._timeout, operation)
