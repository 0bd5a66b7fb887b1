"""How many SSE streams one user and one tenant may hold open in this process.

A stream is one connection to one process, so it is counted where it is held, in
memory; across N replicas a user may hold N times the limit (docs/DECISIONS.md).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from aura.auth import Principal
from aura.errors import TooManyRequests

# A stream lasts as long as its session, seconds to minutes: try again after this long.
RETRY_AFTER_SECONDS: Final = 5


class StreamSlot:
    """One open stream's place; :meth:`release` gives it back, once, however often it is called."""

    __slots__ = ("_slots", "_owner")

    def __init__(self, slots: StreamSlots, owner: Principal) -> None:
        self._slots: StreamSlots | None = slots
        self._owner = owner

    def release(self) -> None:
        if self._slots is not None:
            self._slots._give_back(self._owner)
            self._slots = None


class StreamSlots:
    def __init__(self, *, per_user: int, per_tenant: int) -> None:
        self._per_user = per_user
        self._per_tenant = per_tenant
        self._users: Counter[tuple[str, str]] = Counter()
        self._tenants: Counter[str] = Counter()

    def take(self, owner: Principal) -> StreamSlot:
        """A place for one more stream of ``owner``, or TooManyRequests naming the limit reached."""
        user = (owner.tenant_id, owner.user_id)
        if self._users[user] >= self._per_user:
            raise TooManyRequests(
                f"Too many open streams: at most {self._per_user} per user",
                limit="AURA_MAX_STREAMS_PER_USER",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if self._tenants[owner.tenant_id] >= self._per_tenant:
            raise TooManyRequests(
                f"Too many open streams: at most {self._per_tenant} per tenant",
                limit="AURA_MAX_STREAMS_PER_TENANT",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        self._users[user] += 1
        self._tenants[owner.tenant_id] += 1
        return StreamSlot(self, owner)

    def _give_back(self, owner: Principal) -> None:
        user = (owner.tenant_id, owner.user_id)
        self._users[user] -= 1
        if self._users[user] <= 0:  # no entry per user ever seen: the counters stay as small as the streams
            del self._users[user]
        self._tenants[owner.tenant_id] -= 1
        if self._tenants[owner.tenant_id] <= 0:
            del self._tenants[owner.tenant_id]
