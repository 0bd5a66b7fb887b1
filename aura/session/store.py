"""Sessions in Redis: the event log (a Stream), the snapshot (a hash) and the lease.

The key names are in :mod:`aura.storage.keys`. A session's lease names its
driver; the driver proves it is alive with one heartbeat key for all its
sessions, so keeping 10,000 sessions costs one write per interval, not 10,000,
and lists the sessions it drives in one set, where a survivor finds them. A
session whose driver's heartbeat lapsed is taken over with a compare-and-set on
its lease. Every append is fenced by the lease: a replica that lost a session
cannot write to it.

Cluster-safe by construction: every script touches the keys of one session
only (one hash tag, one slot), or, for a session's quotas, those of its tenant
(``{t:<tenantId>}``, aura.session.quotas); every read of many sessions is a
pipeline of single-key commands (which a cluster client splits by slot), and
nothing is published inside a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis, RedisCluster

from aura.auth import Principal
from aura.errors import LeaseLost, StoreUnavailable, TooManyRequests
from aura.session.quotas import SessionQuotas
from aura.session.snapshot import F, Fields, Snapshot, decode
from aura.storage import keys
from aura.storage.calls import REDIS_FAILURES
from aura.storage.scripts import Script, ScriptCall, ScriptRun, run_scripts

# KEYS: lease, log, snapshot, followers (one session's, so one slot: the hash tag {sid}).
# ARGV: instance, ttl, maxlen, mode, channel, last seq, finished ttl, d, d x field to delete,
# n, n x (seq, frame), field/value pairs.
# mode: "append"; "end" (mark the end, drop the lease, delete the d fields only a live run needs, and
# keep the log and snapshot for the finished ttl only); "create" (take the lease first: a new
# session's creation rides in the same round trip as its first events). The instance's set of
# sessions is another slot, so it is written beside the script (SessionStore.commit).
# Idempotent: entries at or below the stored seq are skipped, so a batch retried after a lost reply
# is not refused by XADD. Published only when another replica follows the session (the followers key).
APPEND_LUA: Final = """
local mode = ARGV[4]
if mode == 'create' then
  -- refused if a survivor took the lease while our heartbeat lapsed: it drives the session now
  local owner = redis.call('GET', KEYS[1])
  if owner and owner ~= ARGV[1] then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
elseif redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if mode == 'end' then
    -- an end retried after its reply was lost: the lease is gone because the end is written
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
    if last and last[2][1] == 'end' then return 1 end
  end
  return 0
end
local stored = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') or 0
local d = tonumber(ARGV[8])
local i = 9 + d
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  if tonumber(ARGV[i]) > stored then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. ARGV[i], 'f', ARGV[i + 1])
  end
  i = i + 2
end
if i < #ARGV then redis.call('HSET', KEYS[3], unpack(ARGV, i)) end  -- every field in one call
if mode == 'end' then
  if d > 0 then redis.call('HDEL', KEYS[3], unpack(ARGV, 9, 8 + d)) end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. (tonumber(ARGV[6]) + 1), 'end', '1')
  redis.call('DEL', KEYS[1])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('PUBLISH', ARGV[5], ARGV[6])
    redis.call('DEL', KEYS[4])  -- nothing is appended after the end: nobody needs it published
  end
  return 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
if n > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
end
return 1
"""

# Compare-and-set of a lease (KEYS[1]): ARGV expected owner ('' = none), new owner ('' = delete), ttl.
# A script rather than WATCH/MULTI: redis-py's cluster transactions break while a node is down.
LEASE_CAS_LUA: Final = """
local owner = redis.call('GET', KEYS[1]) or ''
if owner == ARGV[2] and owner ~= '' then return 1 end  -- a retry of a swap that was made: made
if owner ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


# HSET on the snapshot (KEYS[1]) only while it exists: a field written to an expired snapshot would
# make a hash without a TTL that nothing ever deletes.
HSET_EXISTING_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

log = logging.getLogger(__name__)

_APPEND: Final = Script(APPEND_LUA)
_LEASE_CAS: Final = Script(LEASE_CAS_LUA)
_HSET_EXISTING: Final = Script(HSET_EXISTING_LUA)


def _fields(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, str] | None:
    """A snapshot hash as text; None for a missing (empty) one."""
    return {str(_text(k)): str(_text(v)) for k, v in raw.items()} if raw else None


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
    dropped: Sequence[str] = ()  # with ``end``: snapshot fields deleted in the same call
    owner: Principal | None = None  # with ``create`` or ``end``: whose quotas count the session

    @property
    def mode(self) -> str:
        return "create" if self.create else "end" if self.end else "append"


@dataclass(frozen=True, slots=True)
class LogPage:
    frames: list[tuple[int, str]]  # (seq, SSE frame) in order
    ended: bool  # the end marker was reached


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        instance_id: str,
        *,
        ttl_seconds: int,
        max_events: int,
        lease_seconds: float,
        finished_ttl_seconds: int = 600,
        quotas: SessionQuotas | None = None,
    ) -> None:
        self._redis = redis
        self._quotas = quotas  # None: sessions are not counted (tests of the store alone)
        self.instance_id = instance_id
        self._ttl = ttl_seconds
        # A finished session is only replayed and looked at: its log and snapshot go sooner than a live one's.
        self._finished_ttl = min(finished_ttl_seconds, ttl_seconds)
        self._max_events = max_events
        self._lease_ms = int(lease_seconds * 1000)
        self._sessions_key = keys.instance_sessions(instance_id)

    # -- writing (the lease holder only) ------------------------------------------------
    async def create(self, session_id: str, fields: Mapping[str, str]) -> None:
        """Store a new session's snapshot with this instance's lease, in this instance's set (no events yet)."""
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

        New sessions join this instance's set first, in their own step: a session
        is never driven without being where a survivor looks for it. Ended ones
        leave it after their end is written; a crash between leaves an entry that
        adoption clears.
        """
        if not appends:
            return []
        outcomes: list[Exception | None] = [None] * len(appends)
        created = [i for i, a in enumerate(appends) if a.create]
        if created:
            for i, refusal in zip(created, await self._claim_new([appends[i] for i in created]), strict=True):
                outcomes[i] = refusal
        written = [i for i in range(len(appends)) if outcomes[i] is None]
        answers = await _APPEND.run_all(self._redis, [self._append_call(appends[i]) for i in written]) if written else []
        for i, answer in zip(written, answers, strict=True):
            lost = LeaseLost(appends[i].session_id)
            outcomes[i] = answer if isinstance(answer, Exception) else None if answer else lost
        await self._let_go(appends, outcomes)
        return outcomes

    async def _claim_new(self, created: Sequence[Append]) -> list[Exception | None]:
        """List new sessions as this instance's and count them against their owners' quotas, in one
        round trip; per session, None or why it may not be created (TooManyRequests, or StoreUnavailable
        for an error Redis gave its admission: either way nothing was counted)."""
        ids = [a.session_id for a in created]
        commands = [("SADD", self._sessions_key, *ids), ("EXPIRE", self._sessions_key, self._ttl),
                    ("SADD", keys.INSTANCES, self.instance_id)]  # findable even if it dies before its first heartbeat
        quotas = self._quotas
        if quotas is None:
            await run_scripts(self._redis, [], commands)
            return [None] * len(created)
        counted = [(a.owner, a.session_id) for a in created if a.owner is not None]
        answers = await run_scripts(self._redis, [quotas.admission(owner, sid) for owner, sid in counted], commands)
        verdicts = {sid: quotas.verdict(answer) for (_, sid), answer in zip(counted, answers, strict=True)}
        return [verdicts.get(sid) for sid in ids]

    async def _let_go(self, appends: Sequence[Append], outcomes: Sequence[Exception | None]) -> None:
        """Ended sessions, and new ones that were not created, leave this instance's set; their quotas
        let go of them (an ended one stays counted as kept). One round trip, best effort: the end is
        written, and what is left behind is cleared by adoption or lapses."""
        gone: list[str] = []
        runs: list[ScriptRun] = []
        for append, outcome in zip(appends, outcomes, strict=True):
            ended = append.end and outcome is None
            if not (ended or (append.create and outcome is not None)):
                continue
            gone.append(append.session_id)
            # A creation a quota refused counted nothing; one that failed after its admission did.
            counted = ended or not isinstance(outcome, (TooManyRequests, StoreUnavailable))
            if self._quotas is not None and append.owner is not None and counted:
                runs.append(self._quotas.release(append.owner, append.session_id, keep=ended))
        if not gone:
            return
        try:
            await run_scripts(self._redis, runs, [("SREM", self._sessions_key, *gone)])
        except REDIS_FAILURES as exc:
            log.info("could not take %d session(s) out of the instance set: %s", len(gone), exc)

    def _append_call(self, append: Append) -> ScriptCall:
        sid = append.session_id
        dropped = list(append.dropped) if append.end else []
        args: list[str | int] = [self.instance_id, self._ttl, self._max_events, append.mode,
                                 keys.events_channel(sid), append.last_seq, self._finished_ttl,
                                 len(dropped), *dropped, len(append.frames)]
        for seq, frame in append.frames:
            args += [seq, frame]
        for name, value in append.fields.items():
            args += [name, value]
        return ScriptCall((keys.lease(sid), keys.events(sid), keys.snapshot(sid), keys.followers(sid)), args)

    async def replicate(self, session_id: str, replicas: int, timeout_ms: int) -> int:
        """Wait until ``replicas`` replicas have every write made so far to the session's node.

        ``WAIT`` counts the writes of its own connection, so a write to the session
        (its TTL, renewed) goes first on the same connection: the replication stream
        is ordered, so a replica that has it has every earlier append too. Returns
        how many replicas acknowledged within ``timeout_ms``.
        """
        key = keys.snapshot(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.expire(key, self._ttl)
            if isinstance(self._redis, RedisCluster):  # WAIT has no key: send it to the key's node
                pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=self._redis.get_node_from_key(key))
            else:
                pipe.wait(replicas, timeout_ms)
            _, acknowledged = await pipe.execute()
        return int(acknowledged)

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
        return _fields(await self._redis.hgetall(keys.snapshot(session_id)))

    async def exists(self, session_id: str) -> bool:
        """Whether the session's snapshot is still in Redis."""
        return bool(await self._redis.exists(keys.snapshot(session_id)))

    async def load_many(self, session_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """Several snapshots' fields in one round trip (a cluster splits it by slot)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.hgetall(keys.snapshot(sid))
            answers = await pipe.execute()
        return [_fields(raw) for raw in answers]

    async def load_fields(self, session_ids: Sequence[str], names: Sequence[str]) -> list[dict[str, str] | None]:
        """Some fields of several snapshots in one round trip (HMGET each): a list of sessions needs
        neither their plans nor their contexts. None for a snapshot that is gone; absent fields are left out."""
        if not session_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.hmget(keys.snapshot(sid), list(names))
            answers = await pipe.execute()
        found: list[dict[str, str] | None] = []
        for values in answers:
            fields = {name: str(_text(value)) for name, value in zip(names, values, strict=True) if value is not None}
            found.append(fields or None)
        return found

    async def load_snapshot(self, session_id: str) -> Snapshot | None:
        """The typed snapshot; SnapshotUnreadable when the hash cannot be a session's."""
        fields = await self.load(session_id)
        return None if fields is None else decode(fields)

    # -- leases ----------------------------------------------------------------------------
    async def heartbeat(self) -> bool:
        """Say this instance is alive; False if the heartbeat had lapsed (others may have taken over).

        The registry entry and the set's TTL are renewed too: a survivor finds this
        instance, and its sessions, for as long as any of them can still live.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.instance(self.instance_id), "1", px=self._lease_ms, get=True)
            pipe.expire(self._sessions_key, self._ttl)
            pipe.sadd(keys.INSTANCES, self.instance_id)
            # Judged by the heartbeat alone: the registry's slot may be on a cluster master that is down,
            # and that must not make every instance look dead (the registry entry is renewed next round).
            previous, _, _ = await pipe.execute(raise_on_error=False)
        if isinstance(previous, Exception):
            raise previous
        return previous is not None

    async def stop_heartbeat(self) -> None:
        await self._redis.delete(keys.instance(self.instance_id))

    async def owners(self, session_ids: Sequence[str]) -> list[str | None]:
        """Each session's driver; one GET per session in a pipeline, which a cluster splits by slot."""
        if not session_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.get(keys.lease(sid))
            values = await pipe.execute()
        return [_text(v) for v in values]

    async def alive(self, instance_ids: set[str]) -> set[str]:
        ids = sorted(instance_ids)
        if not ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for instance_id in ids:
                pipe.exists(keys.instance(instance_id))
            answers = await pipe.execute()
        return {instance_id for instance_id, found in zip(ids, answers, strict=True) if found}

    async def instances(self) -> set[str]:
        """Every instance that said it exists: the living, and the dead whose sessions are not all adopted."""
        return {str(_text(i)) for i in await self._redis.smembers(keys.INSTANCES)}

    async def sessions_of(self, instance_id: str, count: int) -> list[str]:
        """Up to ``count`` of the sessions ``instance_id`` drives, at random: survivors share the work."""
        found = await self._redis.srandmember(keys.instance_sessions(instance_id), count)
        return [str(_text(sid)) for sid in found] if isinstance(found, list) else []

    async def disown(self, instance_id: str, session_ids: Sequence[str]) -> None:
        """Take sessions out of ``instance_id``'s set (adopted by someone, or gone)."""
        if session_ids:
            await self._redis.srem(keys.instance_sessions(instance_id), *session_ids)

    async def claim(self, session_ids: Sequence[str]) -> None:
        """Put sessions in this instance's set before they are driven here (created, or adopted)."""
        if session_ids:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.sadd(self._sessions_key, *session_ids)
                pipe.expire(self._sessions_key, self._ttl)
                pipe.sadd(keys.INSTANCES, self.instance_id)  # findable even if it dies before its first heartbeat
                await pipe.execute()

    async def forget_instance(self, instance_id: str) -> None:
        """Drop a dead instance from the registry once none of its sessions is left to adopt."""
        await self._redis.srem(keys.INSTANCES, instance_id)

    async def take_over(self, session_ids: Sequence[str], expected_owners: Sequence[str | None]) -> list[bool]:
        """Make this instance the driver of each session whose lease still names its expected owner."""
        return await self._swap_leases(session_ids, expected_owners, self.instance_id)

    async def release(self, session_ids: Sequence[str]) -> None:
        """Let another instance adopt these sessions right away (draining); others' leases are left alone."""
        await self._swap_leases(session_ids, [self.instance_id] * len(session_ids), None)

    async def _swap_leases(
        self, session_ids: Sequence[str], expected: Sequence[str | None], new_owner: str | None
    ) -> list[bool]:
        if not session_ids:
            return []
        calls = [ScriptCall((keys.lease(sid),), (owner or "", new_owner or "", self._ttl))
                 for sid, owner in zip(session_ids, expected, strict=True)]
        answers = await _LEASE_CAS.run_all(self._redis, calls)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return [bool(answer) for answer in answers]

    async def request_cancel(self, session_id: str) -> None:
        """Flag the snapshot, then wake the driver: a driver that misses the wake-up reads the flag at adoption."""
        await _HSET_EXISTING.run(self._redis, (keys.snapshot(session_id),), (F.CANCEL_REQUESTED, "1"))
        await self._redis.publish(keys.cancel_channel(session_id), "1")
