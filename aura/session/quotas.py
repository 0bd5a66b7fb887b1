"""How many sessions one user and one tenant may have, counted in Redis across every replica.

Three limits, each a sorted set of session ids scored by when the entry lapses (epoch ms):

- a user's **live** sessions (not yet done or aborted), and the tenant's;
- a user's **kept** sessions: those whose keys Redis still holds, live or finished. A finished
  session stays for ``AURA_FINISHED_SESSION_TTL_SECONDS``, so this bounds the Redis bytes one user
  can occupy however fast their sessions end.

An entry lapses on its own when its session's keys would (the live TTL, then the finished TTL),
so a session whose end was never counted (its process died, Redis blinked) frees its place by
itself. Each script touches one user's or one tenant's keys only: Redis Cluster safe.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis

from aura.auth import Principal
from aura.errors import StoreUnavailable, TooManyRequests
from aura.storage import keys
from aura.storage.calls import bounded
from aura.storage.scripts import Script

log = logging.getLogger(__name__)

# A live session ends within minutes (an approval waits at most AURA_HITL_TIMEOUT_SECONDS); when one
# will end is unknown, so a refused client is told to try again after this long.
LIVE_RETRY_AFTER_SECONDS: Final = 10

# KEYS: user live, user kept. ARGV: now ms, session id, live lapse ms, max live, max kept.
# Answers 0 (admitted), or {1, ms until a place may free} (live full), or {2, ms} (kept full).
_ADMIT_USER_LUA: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {1, 0} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(first[2]) - tonumber(ARGV[1])}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return 0
"""
# KEYS: tenant live. ARGV: now ms, session id, live lapse ms, max live. Answers 1 (admitted) or 0.
_ADMIT_TENANT_LUA: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) - tonumber(ARGV[1]) then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
"""
# KEYS: user live, user kept. ARGV: session id, kept lapse ms ('': forget it entirely), now ms.
# The kept entry is only moved, never added: a session already lapsed is not counted again.
_FINISH_USER_LUA: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) - tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[2], ARGV[2]) end
end
return 1
"""
_ADMIT_USER: Final = Script(_ADMIT_USER_LUA)
_ADMIT_TENANT: Final = Script(_ADMIT_TENANT_LUA)
_FINISH_USER: Final = Script(_FINISH_USER_LUA)
_ZREM: Final = Script("return redis.call('ZREM', KEYS[1], ARGV[1])")


class Quotas(Protocol):
    """What the registry counts sessions with: :class:`SessionQuotas`, or a test's stand-in."""

    async def admit(self, owner: Principal, session_id: str) -> None: ...

    async def finish(self, owner: Principal, session_id: str) -> None: ...

    async def forget(self, owner: Principal, session_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    live_per_user: int  # AURA_MAX_LIVE_SESSIONS_PER_USER
    live_per_tenant: int  # AURA_MAX_LIVE_SESSIONS_PER_TENANT
    kept_per_user: int  # AURA_MAX_KEPT_SESSIONS_PER_USER
    live_ttl_seconds: float  # AURA_SESSION_TTL_SECONDS: how long a live session's keys last
    finished_ttl_seconds: float  # AURA_FINISHED_SESSION_TTL_SECONDS


class SessionQuotas:
    def __init__(self, redis: Redis, limits: QuotaLimits, *, redis_timeout_seconds: float) -> None:
        self._redis = redis
        self._limits = limits
        self._timeout = redis_timeout_seconds

    async def admit(self, owner: Principal, session_id: str) -> None:
        """Count a new session for its owner and tenant, or raise TooManyRequests (nothing counted)."""
        limits = self._limits
        now = _now_ms()
        lapse = now + int(limits.live_ttl_seconds * 1000)
        user_keys = _user_keys(owner)
        answer = await bounded(
            _ADMIT_USER.run(
                self._redis, user_keys, [now, session_id, lapse, limits.live_per_user, limits.kept_per_user]
            ),
            self._timeout,
            "admit session",
        )
        if isinstance(answer, list):
            kind, wait_ms = int(answer[0]), int(answer[1])
            if kind == 1:
                raise TooManyRequests(
                    f"Too many live sessions: at most {limits.live_per_user} per user",
                    limit="AURA_MAX_LIVE_SESSIONS_PER_USER",
                    retry_after_seconds=LIVE_RETRY_AFTER_SECONDS,
                )
            raise TooManyRequests(
                f"Too many recent sessions: at most {limits.kept_per_user} per user are kept",
                limit="AURA_MAX_KEPT_SESSIONS_PER_USER",
                retry_after_seconds=math.ceil(max(wait_ms, 0) / 1000),
            )
        try:
            admitted = await bounded(
                _ADMIT_TENANT.run(
                    self._redis, [keys.tenant_live(owner.tenant_id)], [now, session_id, lapse, limits.live_per_tenant]
                ),
                self._timeout,
                "admit session",
            )
        except BaseException:
            await self.forget(owner, session_id)
            raise
        if not admitted:
            await self.forget(owner, session_id)
            raise TooManyRequests(
                f"Too many live sessions: at most {limits.live_per_tenant} per tenant",
                limit="AURA_MAX_LIVE_SESSIONS_PER_TENANT",
                retry_after_seconds=LIVE_RETRY_AFTER_SECONDS,
            )

    async def finish(self, owner: Principal, session_id: str) -> None:
        """The session ended: no longer live; kept until Redis drops its keys. Best effort: an entry
        not updated lapses by itself."""
        await self._release(owner, session_id, keep=True, operation="finish session")

    async def forget(self, owner: Principal, session_id: str) -> None:
        """The session was never stored (its creation failed or was refused): uncount it entirely."""
        await self._release(owner, session_id, keep=False, operation="forget session")

    async def _release(self, owner: Principal, session_id: str, *, keep: bool, operation: str) -> None:
        now = _now_ms()
        kept_lapse = str(now + int(self._limits.finished_ttl_seconds * 1000)) if keep else ""
        user_keys = _user_keys(owner)
        try:
            await bounded(
                _FINISH_USER.run(self._redis, user_keys, [session_id, kept_lapse, now]), self._timeout, operation
            )
            await bounded(
                _ZREM.run(self._redis, [keys.tenant_live(owner.tenant_id)], [session_id]), self._timeout, operation
            )
        except StoreUnavailable as exc:
            log.warning("session %s: its quota entries lapse by themselves: %s", session_id, exc)


def _user_keys(owner: Principal) -> list[str]:
    quota_owner = keys.quota_owner(owner.tenant_id, owner.user_id)
    return [keys.user_live(quota_owner), keys.user_kept(quota_owner)]


def _now_ms() -> int:
    return int(time.time() * 1000)
