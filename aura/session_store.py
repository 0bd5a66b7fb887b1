"""Sessions in Redis: the event log (a Stream), the snapshot (a hash) and the lease.

    aura:session:{sid}            HASH    snapshot (state, plan, step, pending request, owner, last seq, ...)
    aura:session:{sid}:events     STREAM  one entry per event, id ``0-{seq}``, field ``f`` = the SSE frame;
                                          a last entry with field ``end`` marks the end of the session
    aura:session:{sid}:lease      STRING  the instance that drives the session
    aura:instance:{instanceId}    STRING  that instance's heartbeat; expires unless renewed
    aura:sessions:live            ZSET    sessions not yet final, scanned for orphans to adopt
    aura:events:{sid}             channel "the log grew", for followers on other replicas
    aura:cancel:{sid}             channel "cancel requested", for whichever replica drives it

A session's lease names its driver; the driver proves it is alive with one
heartbeat key for all its sessions, so keeping 10,000 sessions costs one write
per interval, not 10,000. A session whose driver's heartbeat lapsed is taken
over with a compare-and-set on its lease. Every append is fenced by the lease
(WATCH/MULTI): a replica that lost a session cannot write to it.
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


# KEYS: lease, log, snapshot, live set.
# ARGV: instance, ttl, maxlen, end (0/1), sessionId, channel, last seq, n, n x (seq, frame), field/value pairs.
_APPEND_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[8])
local i = 9
for _ = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. ARGV[i], 'f', ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. (tonumber(ARGV[7]) + 1), 'end', '1')
  redis.call('ZREM', KEYS[4], ARGV[5])
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


# KEYS: lease, snapshot, live set. ARGV: instance, ttl, sessionId, now, field/value pairs.
_CREATE_LUA: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local i = 5
while i < #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
"""


def instance_key(instance_id: str) -> str:
    return f"aura:instance:{instance_id}"


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
        self._append_script = redis.register_script(_APPEND_LUA)
        self._create_script = redis.register_script(_CREATE_LUA)

    # -- writing (the lease holder only) ------------------------------------------------
    async def create(self, session_id: str, fields: Mapping[str, str]) -> None:
        args: list[str | int | float] = [self.instance_id, self._ttl, session_id, time.time()]
        for name, value in fields.items():
            args += [name, value]
        await self._create_script(keys=[lease_key(session_id), snapshot_key(session_id), LIVE_KEY], args=args)

    async def append(
        self, session_id: str, frames: Sequence[tuple[int, str]], fields: Mapping[str, str], *, end: bool = False
    ) -> None:
        """Add events and update the snapshot atomically, if we still hold the lease.

        One Lua call instead of a WATCH/MULTI transaction: a third of the round
        trips and a tenth of the commands redis-py has to encode and parse.
        """
        last = frames[-1][0] if frames else int(fields.get("seq", "0"))
        args: list[str | int] = [self.instance_id, self._ttl, self._max_events, 1 if end else 0, session_id,
                                 events_channel(session_id), last, len(frames)]
        for seq, frame in frames:
            args += [seq, frame]
        for name, value in fields.items():
            args += [name, value]
        keys = [lease_key(session_id), events_key(session_id), snapshot_key(session_id), LIVE_KEY]
        if not await self._append_script(keys=keys, args=args):
            raise LeaseLost(f"{session_id} is driven by another instance")

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
    async def heartbeat(self) -> bool:
        """Say this instance is alive; False if the heartbeat had lapsed (others may have taken over)."""
        previous = await self._redis.set(instance_key(self.instance_id), "1", px=self._lease_ms, get=True)
        return previous is not None

    async def stop_heartbeat(self) -> None:
        await self._redis.delete(instance_key(self.instance_id))

    async def owners(self, session_ids: Sequence[str]) -> list[str | None]:
        if not session_ids:
            return []
        values = await self._redis.mget([lease_key(sid) for sid in session_ids])
        return [_text(v) for v in values]

    async def alive(self, instance_ids: set[str]) -> set[str]:
        ids = sorted(instance_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for instance_id in ids:
                pipe.exists(instance_key(instance_id))
            answers = await pipe.execute()
        return {instance_id for instance_id, found in zip(ids, answers, strict=True) if found}

    async def take_over(self, session_id: str, expected_owner: str | None) -> bool:
        """Make this instance the driver if the lease still names ``expected_owner`` (compare-and-set)."""
        key = lease_key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if _text(await pipe.get(key)) != expected_owner:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, self.instance_id, ex=self._ttl)
                await pipe.execute()
                return True
            except WatchError:
                return False  # another replica was quicker

    async def release(self, session_id: str) -> None:
        """Let another instance adopt the session right away (used when draining)."""
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

    async def live_sessions(self, start: int = 0, limit: int = 1000) -> list[str]:
        ids = await self._redis.zrange(LIVE_KEY, start, start + limit - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def forget(self, session_id: str) -> None:
        """Drop a live-set entry whose snapshot expired."""
        await self._redis.zrem(LIVE_KEY, session_id)

    async def request_cancel(self, session_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(snapshot_key(session_id), "cancelRequested", "1")
            pipe.publish(cancel_channel(session_id), "1")
            await pipe.execute()
