"""The lifecycle of one Aura process: start its background work, drain it, close it.

The parts come from the composition root (:func:`aura.wiring.build`); the
lifespan enters the runtime, and :class:`aura.server.AuraServer` drains it
before uvicorn waits on open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from statemachines import State

from aura.agent.planner import Planner
from aura.agent.tools import ToolRegistry
from aura.config import Settings
from aura.errors import StoreUnavailable
from aura.hitl.hub import SignalHub
from aura.storage.calls import stop_if_cancelled
from aura.storage.clients import RedisClients
from aura.wiring import Services, build

log = logging.getLogger(__name__)
PRIMARY_CHECK_SECONDS = 1.0  # how long pooled connections may stay on a demoted Sentinel primary


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        redis: RedisClients | None = None,
        planner: Planner | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.services: Services = build(settings, redis=redis, planner=planner, tools=tools)
        self.settings = settings
        self._background: list[asyncio.Task[None]] = []
        self._drained = False

    @property
    def hub(self) -> SignalHub:
        return self.services.hub

    async def __aenter__(self) -> Runtime:
        services = self.services
        try:
            await services.redis.initialize(self.settings.redis_timeout_seconds)
        except StoreUnavailable as exc:  # not fatal: readiness says DEGRADED, and the clients retry
            log.warning("Redis is not reachable at start-up (%s); retrying in the background", exc)
        self._background = [
            asyncio.create_task(services.hub.run(), name="aura-signal-hub"),
            asyncio.create_task(services.leases.run(), name="aura-leases"),
        ]
        if services.redis.mode == "sentinel":
            self._background.append(asyncio.create_task(self._follow_primary(), name="aura-follow-primary"))
        return self

    async def _follow_primary(self) -> None:
        """Every second, ask the sentinels where the primary is; move the subscription when it moved."""
        task = asyncio.current_task()
        while True:
            stop_if_cancelled(task)
            try:
                if await self.services.redis.follow_primary(self.settings.redis_timeout_seconds):
                    log.warning("the Redis primary moved; following it")
                    self.services.hub.reconnect()
            except StoreUnavailable as exc:
                log.debug("asking the sentinels failed: %s", exc)
            except Exception:  # supervised: following the primary must outlive a bug in one check
                log.exception("following the Redis primary failed")
            await asyncio.sleep(PRIMARY_CHECK_SECONDS)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.drain()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        services = self.services
        await services.writer.aclose()
        if services.task_reporter is not None:
            await services.task_reporter.aclose()
        await services.http.aclose()
        await services.redis.aclose()

    async def drain(self) -> None:
        """Stop driving sessions without ending them: streams end, leases go, others adopt.

        Each session stays in Redis where it was; a replica (or this process,
        restarted) takes it over as soon as it sees the lease gone.
        """
        if self._drained:
            return
        self._drained = True
        services = self.services
        services.notifier.drain()
        sessions = services.registry.all()
        services.leases.stopped = True
        await services.runs.drain(self.settings.shutdown_grace_seconds)
        try:
            await services.leases.release_all(sessions)
        except StoreUnavailable as exc:
            log.warning("could not release the leases (%s); they lapse in %g s", exc, self.settings.lease_seconds)

    # -- health -----------------------------------------------------------------------------
    async def redis_ok(self) -> bool:
        """Redis takes writes here: a primary, not a demoted one (or a cluster with every slot served)."""
        return await self.services.redis.writable(min(1.0, self.settings.redis_timeout_seconds))

    @property
    def heartbeat_ok(self) -> bool:
        """Peers see this instance alive: its last heartbeat reached Redis less than a lease ago."""
        return self.services.leases.heartbeat_fresh

    def counts(self) -> dict[str, int]:
        registry = self.services.registry
        live = [s for s in registry.all() if not s.model.is_final]
        return {
            "live": len(live),
            "awaitingApproval": sum(1 for s in live if s.state is State.AWAITING_APPROVAL),
            "driven": len(registry),
            "started": self.services.runs.started,
        }
