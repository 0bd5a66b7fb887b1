"""Sessions in Redis: the event log (a Stream), the snapshot (a hash) and the lease.

    aura:session:{sid}            HASH    snapshot (state, plan, step, pending request, owner, last seq, ...)
    aura:session:{sid}:events     STREAM  one entry per event, id ``0-{seq}``, field ``f`` = the SSE frame;
                                          a last entry with field ``end`` marks the end of the session
    aura:session:{sid}:lease      STRING  the instance that drives the session; expires unless renewed
    aura:sessions:live            ZSET    sessions not yet final, scanned for orphans to adopt
    aura:events:{sid}             channel "the log grew", for followers on other replicas
    aura:cancel:{sid}             channel "cancel requested", for whichever replica drives it

Every append is fenced by the lease (WATCH/MULTI): a replica that lost its lease
cannot write, so one session has exactly one writer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import WatchError

from aura.errors import LeaseLost

LIVE_KEY: Final = "aura:sessions:live"
EVENTS_CHANNEL_PATTERN: Final = "aura:events:*"
CANCEL_CHANNEL_PATTERN: Final = "aura:cancel:*"


def snapshot_key(session_id: str) -> str:
    return f"aura:session:{session_id}"


def events_key(session_id: str) -> str:
    return f"aura:session:{session_id}:events"


def lease_key(session_id: str) -> str:
    return f"aura:session:{session_id}:lease"


def events_channel(session_id: str) -> str:
    return f"aura:events:{session_id}"


def cancel_channel(session_id: str) -> str:
    return f"aura:cancel:{session_id}"


def _mapping(fields: Mapping[str, str]) -> dict[Any, Any]:
    return dict(fields)  # redis-py's Mapping parameter is invariant in its key type


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class LogPage:
    frames: list[tuple[int, str]]  # (seq, SSE frame) in order
    ended: bool  # the end marker was reached


class SessionStore:
    def __init__(
        self, redis: Redis, instance_id: str, *, ttl_seconds: int, max_events: int, lease_seconds: float
    ) -> None:
        self._redis = redis
        self.instance_id = instance_id
        self._ttl = ttl_seconds
        self._max_events = max_events
        self._lease_ms = int(lease_seconds * 1000)

    # -- writing (the lease holder only) ------------------------------------------------
    async def create(self, session_id: str, fields: Mapping[str, str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(lease_key(session_id), self.instance_id, px=self._lease_ms)
            pipe.hset(snapshot_key(session_id), mapping=_mapping(fields))
            pipe.expire(snapshot_key(session_id), self._ttl)
            pipe.zadd(LIVE_KEY, {session_id: time.time()})
            await pipe.execute()

    async def append(
        self, session_id: str, frames: Sequence[tuple[int, str]], fields: Mapping[str, str], *, end: bool = False
    ) -> None:
        """Add events and update the snapshot in one transaction, if we still hold the lease."""
        lease = lease_key(session_id)
        log = events_key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(lease)
                    if _text(await pipe.get(lease)) != self.instance_id:
                        raise LeaseLost(f"{session_id} is driven by another instance")
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for seq, frame in frames:
                        pipe.xadd(log, {"f": frame}, id=f"0-{seq}", maxlen=self._max_events, approximate=True)
                    last = frames[-1][0] if frames else int(fields.get("seq", "0"))
                    if end:
                        pipe.xadd(log, {"end": "1"}, id=f"0-{last + 1}", maxlen=self._max_events, approximate=True)
                        pipe.zrem(LIVE_KEY, session_id)
                        pipe.delete(lease)
                    if fields:
                        pipe.hset(snapshot_key(session_id), mapping=_mapping(fields))
                    pipe.expire(snapshot_key(session_id), self._ttl)
                    pipe.expire(log, self._ttl)
                    pipe.publish(events_channel(session_id), str(last))
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    # -- reading (anyone) -----------------------------------------------------------------
    async def read(self, session_id: str, after_seq: int, *, count: int = 500) -> LogPage:
        entries = await self._redis.xrange(events_key(session_id), f"(0-{after_seq}", "+", count=count) or []
        frames: list[tuple[int, str]] = []
        ended = False
        for entry_id, fields in entries:
            seq = int(str(_text(entry_id)).split("-", 1)[1])
            values = {str(_text(k)): _text(v) for k, v in (fields or {}).items()}
            if "end" in values:
                ended = True
                break
            frames.append((seq, values.get("f") or ""))
        return LogPage(frames, ended)

    async def load(self, session_id: str) -> dict[str, str] | None:
        raw = await self._redis.hgetall(snapshot_key(session_id))
        if not raw:
            return None
        return {str(_text(k)): str(_text(v)) for k, v in raw.items()}

    # -- leases ----------------------------------------------------------------------------
    async def acquire(self, session_id: str) -> bool:
        ok = await self._redis.set(lease_key(session_id), self.instance_id, nx=True, px=self._lease_ms)
        return bool(ok)

    async def renew(self, session_id: str) -> bool:
        """Keep our lease; take it back if it lapsed unclaimed (an outage); False if another holds it."""
        key = lease_key(session_id)
        answer = await self._redis.set(key, self.instance_id, nx=True, get=True, px=self._lease_ms)
        previous = answer if isinstance(answer, str) else _text(answer) if isinstance(answer, bytes) else None
        if previous is None:
            return True  # it had lapsed and nobody took it: ours again
        if previous != self.instance_id:
            return False
        if await self._redis.pexpire(key, self._lease_ms):
            return True
        return await self.acquire(session_id)  # expired between the two calls

    async def release(self, session_id: str) -> None:
        key = lease_key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if _text(await pipe.get(key)) == self.instance_id:
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(key)
                    await pipe.execute()
            except WatchError:
                pass  # someone else took it meanwhile: it is not ours to delete

    async def live_sessions(self, limit: int = 1000) -> list[str]:
        ids = await self._redis.zrange(LIVE_KEY, 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def forget(self, session_id: str) -> None:
        """Drop a live-set entry whose snapshot expired."""
        await self._redis.zrem(LIVE_KEY, session_id)

    async def request_cancel(self, session_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(snapshot_key(session_id), "cancelRequested", "1")
            pipe.publish(cancel_channel(session_id), "1")
            await pipe.execute()
