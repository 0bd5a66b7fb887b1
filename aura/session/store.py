"""Sessions in Redis: the event log (a Stream), the snapshot (a hash) and the lease.

The key names are in :mod:`aura.storage.keys`. A session's lease names its
driver; the driver proves it is alive with one heartbeat key for all its
sessions, so keeping 10,000 sessions costs one write per interval, not 10,000.
A session whose driver's heartbeat lapsed is taken over with a compare-and-set
on its lease. Every append is fenced by the lease: a replica that lost a
session cannot write to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, WatchError

from aura.errors import LeaseLost
from aura.session.snapshot import F, Fields, Snapshot, decode
from aura.storage import keys

# KEYS: lease, log, snapshot, live set, followers.
# ARGV: instance, ttl, maxlen, mode, sessionId, channel, last seq, n, n x (seq, frame), field/value pairs.
# mode: "append"; "end" (mark the end: leave the live set, drop the lease); "create" (take the lease and
# join the live set first: a new session's creation rides in the same round trip as its first events).
# Idempotent: entries at or below the stored seq are skipped, so a batch retried after a lost reply
# is not refused by XADD. Published only when another replica follows the session (the followers key).
APPEND_LUA: Final = """
local mode = ARGV[4]
if mode == 'create' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('ZADD', KEYS[4], redis.call('TIME')[1], ARGV[5])
elseif redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if mode == 'end' then
    -- an end retried after its reply was lost: the lease is gone because the end is written
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
    if last and last[2][1] == 'end' then return 1 end
  end
  return 0
end
local stored = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') or 0
local n = tonumber(ARGV[8])
local i = 9
for _ = 1, n do
  if tonumber(ARGV[i]) > stored then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. ARGV[i], 'f', ARGV[i + 1])
  end
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if mode == 'end' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. (tonumber(ARGV[7]) + 1), 'end', '1')
  redis.call('ZREM', KEYS[4], ARGV[5])
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
if n > 0 or mode == 'end' then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if (n > 0 or mode == 'end') and redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return 1
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class Append:
    """One session's share of a group commit."""

    session_id: str
    frames: Sequence[tuple[int, str]]
    fields: Fields
    last_seq: int
    end: bool = False
    create: bool = False  # a new session: take its lease and list it as live in the same call

    @property
    def mode(self) -> str:
        return "create" if self.create else "end" if self.end else "append"


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
        self._append_script = redis.register_script(APPEND_LUA)

    # -- writing (the lease holder only) ------------------------------------------------
    async def create(self, session_id: str, fields: Mapping[str, str]) -> None:
        """Store a new session's snapshot with this instance's lease, listed as live (no events yet)."""
        await self._commit_one(Append(session_id, (), dict(fields), 0, create=True))

    async def append(self, session_id: str, frames: Sequence[tuple[int, str]], fields: Fields, *, end: bool = False) -> None:
        """One session's events and snapshot, atomically, if we still hold the lease (LeaseLost if not)."""
        last = frames[-1][0] if frames else int(fields.get("seq", "0"))
        await self._commit_one(Append(session_id, frames, fields, last, end))

    async def _commit_one(self, append: Append) -> None:
        [failure] = await self.commit([append])
        if failure is not None:
            raise failure

    async def commit(self, appends: Sequence[Append]) -> list[Exception | None]:
        """Many sessions' appends in one round trip (a pipeline of one script call each).

        Each call stays atomic and fenced by its own session's lease. The answer
        has, per append, None when it was written, LeaseLost when the lease was
        gone (nothing written), or the error Redis gave for that call alone, so
        one broken session never fails the others' commits. A failure of the
        connection itself raises.
        """
        if not appends:
            return []
        sha = self._append_script.sha
        for _ in range(2):  # a second time only if Redis forgot the script (restart, SCRIPT FLUSH)
            async with self._redis.pipeline(transaction=False) as pipe:
                for append in appends:
                    self._queue_append(pipe, sha, append)
                answers = await pipe.execute(raise_on_error=False)
            if not any(isinstance(answer, NoScriptError) for answer in answers):
                break
            await self._redis.script_load(APPEND_LUA)
        return [
            answer if isinstance(answer, Exception) else None if answer else LeaseLost(append.session_id)
            for append, answer in zip(appends, answers, strict=True)
        ]

    def _queue_append(self, pipe: Pipeline, sha: str, append: Append) -> None:
        sid = append.session_id
        args: list[str | int] = [self.instance_id, self._ttl, self._max_events, append.mode, sid,
                                 keys.events_channel(sid), append.last_seq, len(append.frames)]
        for seq, frame in append.frames:
            args += [seq, frame]
        for name, value in append.fields.items():
            args += [name, value]
        pipe.evalsha(sha, 5, keys.lease(sid), keys.events(sid), keys.snapshot(sid), keys.LIVE_SESSIONS,
                     keys.followers(sid), *args)

    async def follow(self, session_id: str, ttl_seconds: float) -> None:
        """Ask the driver to publish appends: a follower on another replica is listening."""
        await self._redis.set(keys.followers(session_id), "1", px=max(int(ttl_seconds * 1000), 1))

    # -- reading (anyone) -----------------------------------------------------------------
    async def read(self, session_id: str, after_seq: int, *, count: int = 500) -> LogPage:
        entries = await self._redis.xrange(keys.events(session_id), f"(0-{after_seq}", "+", count=count) or []
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
        raw = await self._redis.hgetall(keys.snapshot(session_id))
        if not raw:
            return None
        return {str(_text(k)): str(_text(v)) for k, v in raw.items()}

    async def load_snapshot(self, session_id: str) -> Snapshot | None:
        """The typed snapshot; SnapshotUnreadable when the hash cannot be a session's."""
        fields = await self.load(session_id)
        return None if fields is None else decode(fields)

    # -- leases ----------------------------------------------------------------------------
    async def heartbeat(self) -> bool:
        """Say this instance is alive; False if the heartbeat had lapsed (others may have taken over)."""
        previous = await self._redis.set(keys.instance(self.instance_id), "1", px=self._lease_ms, get=True)
        return previous is not None

    async def stop_heartbeat(self) -> None:
        await self._redis.delete(keys.instance(self.instance_id))

    async def owners(self, session_ids: Sequence[str]) -> list[str | None]:
        if not session_ids:
            return []
        values = await self._redis.mget([keys.lease(sid) for sid in session_ids])
        return [_text(v) for v in values]

    async def alive(self, instance_ids: set[str]) -> set[str]:
        ids = sorted(instance_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for instance_id in ids:
                pipe.exists(keys.instance(instance_id))
            answers = await pipe.execute()
        return {instance_id for instance_id, found in zip(ids, answers, strict=True) if found}

    async def take_over(self, session_id: str, expected_owner: str | None) -> bool:
        """Make this instance the driver if the lease still names ``expected_owner`` (compare-and-set)."""
        key = keys.lease(session_id)
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
        key = keys.lease(session_id)
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
        ids = await self._redis.zrange(keys.LIVE_SESSIONS, start, start + limit - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def forget(self, session_id: str) -> None:
        """Drop a live-set entry whose snapshot expired."""
        await self._redis.zrem(keys.LIVE_SESSIONS, session_id)

    async def request_cancel(self, session_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.snapshot(session_id), F.CANCEL_REQUESTED, "1")
            pipe.publish(keys.cancel_channel(session_id), "1")
            await pipe.execute()
