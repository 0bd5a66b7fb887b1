"""How many sessions one user and one tenant may have, counted in Redis across every replica.

Three limits, each a sorted set of session ids scored by when the entry lapses (epoch ms):

- a user's **live** sessions (not yet done or aborted), and the tenant's;
- a user's **kept** sessions: those whose keys Redis still holds, live or finished. A finished
  session stays for ``AURA_FINISHED_SESSION_TTL_SECONDS``, so this bounds the Redis bytes one user
  can occupy however fast their sessions end.

An entry lapses on its own when its session's keys would (the live TTL, then the finished TTL),
so a session whose end was never counted (its process died, Redis blinked) frees its place by
itself. Every quota key of a tenant carries the tenant's hash tag, so one script checks and counts
a session against all three limits at once, atomically, on Redis Cluster too (a tenant's quotas
live on one node: a few small sorted sets).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from redis.asyncio import Redis

from aura.auth import Principal
from aura.errors import StoreUnavailable, TooManyRequests
from aura.storage import keys
from aura.storage.calls import bounded
from aura.storage.scripts import Script, ScriptArg, ScriptCall, ScriptRun, run_scripts

log = logging.getLogger(__name__)

# A live session ends within minutes (an approval waits at most AURA_HITL_TIMEOUT_SECONDS); when one
# will end is unknown, so a refused client is told to try again after this long.
LIVE_RETRY_AFTER_SECONDS: Final = 10

# KEYS: user live, user kept, tenant live (one slot: the tenant's hash tag).
# ARGV: now ms, session id, live lapse ms, max live per user, max kept per user, max live per tenant.
# Answers 0 (counted, or already counted), or {limit, ms until a place may free} with limit 1 (the
# user's live sessions), 2 (the user's kept ones) or 3 (the tenant's live ones); then nothing is counted.
_ADMIT_LUA: Final = """
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1]) end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {1, 0} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(first[2]) - tonumber(ARGV[1])}
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return {3, 0} end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[i], ARGV[3])  -- the newest entry lapses last
end
return 0
"""
# KEYS: as above. ARGV: session id, kept lapse ms ('': forget it entirely), now ms.
# No longer live; the kept entry is only moved, never added: a session already lapsed is not counted again.
_RELEASE_LUA: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) - tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[2], ARGV[2]) end
end
return 1
"""
_ADMIT: Final = Script(_ADMIT_LUA)
_RELEASE: Final = Script(_RELEASE_LUA)
_LIMITS: Final = {
    1: ("AURA_MAX_LIVE_SESSIONS_PER_USER", "Too many live sessions: at most {} per user"),
    2: ("AURA_MAX_KEPT_SESSIONS_PER_USER", "Too many recent sessions: at most {} per user are kept"),
    3: ("AURA_MAX_LIVE_SESSIONS_PER_TENANT", "Too many live sessions: at most {} per tenant"),
}


class Quotas(Protocol):
    """What the registry uncounts a failed creation with: :class:`SessionQuotas`, or a test's stand-in."""

    async def forget(self, owner: Principal, session_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TenantLive:
    session_ids: list[str]  # newest first, at most the limit asked for
    total: int  # how many the tenant has live, listed or not


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    live_per_user: int  # AURA_MAX_LIVE_SESSIONS_PER_USER
    live_per_tenant: int  # AURA_MAX_LIVE_SESSIONS_PER_TENANT
    kept_per_user: int  # AURA_MAX_KEPT_SESSIONS_PER_USER
    live_ttl_seconds: float  # AURA_SESSION_TTL_SECONDS: how long a live session's keys last
    finished_ttl_seconds: float  # AURA_FINISHED_SESSION_TTL_SECONDS


class SessionQuotas:
    """The quota scripts of one session, to be run where its creation and its end are committed.

    The session store runs :meth:`admission` in the round trip that lists new sessions as its
    instance's and :meth:`release` in the one that takes ended sessions out, so quotas add one
    script call at each end of a session but no round trip (four round trips of their own cost a
    third of a plain session's CPU, docs/BENCHMARKS.md).
    """

    def __init__(self, redis: Redis, limits: QuotaLimits, *, redis_timeout_seconds: float) -> None:
        self._redis = redis
        self._limits = limits
        self._timeout = redis_timeout_seconds

    # -- the pieces of a pipeline ---------------------------------------------------------
    def admission(self, owner: Principal, session_id: str) -> ScriptRun:
        """Count a new session against its owner's and its tenant's limits; :meth:`verdict` reads the answer."""
        limits = self._limits
        now = _now_ms()
        lapse = now + int(limits.live_ttl_seconds * 1000)
        args: list[ScriptArg] = [now, session_id, lapse, limits.live_per_user, limits.kept_per_user, limits.live_per_tenant]
        return ScriptRun(_ADMIT, ScriptCall(_keys(owner), args))

    def verdict(self, answer: Any) -> Exception | None:
        """None when the session was counted; else why not (nothing was counted): TooManyRequests at a
        limit, or StoreUnavailable for an error Redis gave."""
        if isinstance(answer, Exception):
            error = StoreUnavailable("admit session", answer)
            error.__cause__ = answer  # as aura.storage.calls maps it: the reply stays the cause
            return error
        if not isinstance(answer, list):
            return None
        kind, wait_ms = int(answer[0]), int(answer[1])
        setting, message = _LIMITS[kind]
        limits = self._limits
        limit = {1: limits.live_per_user, 2: limits.kept_per_user, 3: limits.live_per_tenant}[kind]
        # A kept session leaves when Redis drops its keys, which the answer says; a live one's end is unknown.
        retry_after = math.ceil(max(wait_ms, 0) / 1000) if kind == 2 else LIVE_RETRY_AFTER_SECONDS
        return TooManyRequests(message.format(limit), limit=setting, retry_after_seconds=retry_after)

    def release(self, owner: Principal, session_id: str, *, keep: bool) -> ScriptRun:
        """The session is no longer live: ``keep`` it counted until Redis drops its keys (it ended), or
        not at all (it was never stored). Idempotent; an entry never released lapses by itself."""
        now = _now_ms()
        kept_lapse = str(now + int(self._limits.finished_ttl_seconds * 1000)) if keep else ""
        args: list[ScriptArg] = [session_id, kept_lapse, now]
        return ScriptRun(_RELEASE, ScriptCall(_keys(owner), args))

    # -- on its own -------------------------------------------------------------------------
    async def live_in_tenant(self, tenant_id: str, limit: int) -> TenantLive:
        """Up to ``limit`` of the tenant's live sessions, newest first, and how many there are.

        Read from the tenant's live set, without its lapsed entries (a score at or before now): the
        same sessions the tenant's limit counts. One round trip, bounded; StoreUnavailable if Redis fails.
        """
        key = keys.tenant_live(tenant_id)
        now = _now_ms()

        async def read() -> tuple[list[Any], int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                # ZRANGE … BYSCORE REV rather than ZREVRANGEBYSCORE: one command fewer in the ACL (compose.yaml).
                pipe.zrange(key, "+inf", f"({now}", desc=True, byscore=True, offset=0, num=limit)  # lapse = created + TTL
                pipe.zcount(key, f"({now}", "+inf")
                found, total = await pipe.execute()
            return found, int(total)

        found, total = await bounded(read(), self._timeout, "list live sessions")
        return TenantLive([item.decode() if isinstance(item, bytes) else str(item) for item in found], total)

    async def forget(self, owner: Principal, session_id: str) -> None:
        """A creation failed after Redis may have counted it (a lost reply): uncount it now, rather than
        when its entries lapse an hour later. Best effort."""
        try:
            await bounded(run_scripts(self._redis, [self.release(owner, session_id, keep=False)]), self._timeout,
                          "forget session")
        except StoreUnavailable as exc:
            log.warning("session %s: its quota entries lapse by themselves: %s", session_id, exc)


def _keys(owner: Principal) -> list[str]:
    return [keys.user_live(owner.tenant_id, owner.user_id), keys.user_kept(owner.tenant_id, owner.user_id),
            keys.tenant_live(owner.tenant_id)]


def _now_ms() -> int:
    return int(time.time() * 1000)
