"""Before a side effect, the event that says it began is on a replica, not just on the primary.

Redis replicates asynchronously: a primary that fails right after acknowledging
``executing`` may lose it, and the replica promoted in its place would let an
adopting instance run the tool a second time. ``WAIT`` closes that window for the
steps where it matters (docs/DECISIONS.md).
"""

from __future__ import annotations

from typing import Protocol

from aura.errors import NotReplicated, StoreUnavailable
from aura.storage.calls import bounded


class ReplicatingStore(Protocol):
    async def replicate(self, session_id: str, replicas: int, timeout_ms: int) -> int: ...


class ReplicaAcks:
    """``confirm`` returns once ``replicas`` replicas have the session's writes (0: at once)."""

    def __init__(
        self, store: ReplicatingStore, replicas: int, *, timeout_seconds: float, redis_timeout_seconds: float
    ) -> None:
        self._store = store
        self.replicas = replicas
        self._timeout_ms = max(int(timeout_seconds * 1000), 1)
        self._bound = timeout_seconds + redis_timeout_seconds  # WAIT's own wait, plus the round trip

    async def confirm(self, session_id: str) -> None:
        """StoreUnavailable (cause NotReplicated, or Redis's error) if the replicas did not all answer."""
        if self.replicas == 0:
            return
        acknowledged = await bounded(
            self._store.replicate(session_id, self.replicas, self._timeout_ms), self._bound, "replicate"
        )
        if acknowledged < self.replicas:
            shortfall = NotReplicated(session_id, acknowledged, self.replicas)
            raise StoreUnavailable("replicate", shortfall) from shortfall
