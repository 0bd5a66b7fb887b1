"""Everything one Aura process owns, and its lifecycle (started and stopped by the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from types import TracebackType

import httpx
from redis.exceptions import RedisError

from statemachines import State, new_session_machine

from aura.agent import AgentRunner
from aura.agent_tasks import AgentTaskReporter
from aura.auth import TokenVerifier
from aura.config import Settings
from aura.feed import Notifier, SessionFeed
from aura.hitl_store import HitlStore
from aura.http_tools import load_tools
from aura.llm import ChatClient, LlmSettings
from aura.llm_planner import LlmPlanner
from aura.planner import Planner, RuleBasedPlanner
from aura.redis_backend import RedisClients, connect
from aura.session import Session, SessionRegistry
from aura.session_store import SessionStore
from aura.signal_hub import SignalHub
from aura.tools import ToolRegistry, builtin_tools

log = logging.getLogger(__name__)

_ADOPTION_PAGE = 500


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        redis: RedisClients | None = None,
        planner: Planner | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = f"aura-{uuid.uuid4().hex[:12]}"
        self.redis = redis if redis is not None else connect(settings)
        self.verifier = TokenVerifier(settings.jwt_secret, leeway_seconds=settings.jwt_leeway_seconds)
        self.store = HitlStore(self.redis.commands)
        self.session_store = SessionStore(
            self.redis.commands,
            self.instance_id,
            ttl_seconds=settings.session_ttl_seconds,
            max_events=settings.session_max_events,
            lease_seconds=settings.lease_seconds,
        )
        self.notifier = Notifier()
        self.hub = SignalHub(
            self.redis.subscriber,
            self.store,
            sweep_seconds=settings.signal_sweep_seconds,
            redis_timeout_seconds=settings.redis_timeout_seconds,
            on_log_grew=self.notifier.wake,
            on_cancel=self._cancel_requested,
        )
        self.sessions = SessionRegistry(new_session_machine(), self.session_store, self.notifier)
        self.tools = tools if tools is not None else default_tools(settings)
        # One outbound client for the LLM, DWP tools and AgentTask reports.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.tool_timeout_seconds))
        self.task_reporter = (
            AgentTaskReporter(self.http, settings.agent_task_url, self.feed, timeout_seconds=settings.tool_timeout_seconds)
            if settings.agent_task_url
            else None
        )
        self.runner = AgentRunner(
            planner=planner if planner is not None else default_planner(settings, self.http, self.tools),
            tools=self.tools,
            store=self.store,
            hub=self.hub,
            registry=self.sessions,
            tool_context_redis=self.redis.commands,
            hitl_timeout_seconds=settings.hitl_timeout_seconds,
            tool_timeout_seconds=settings.tool_timeout_seconds,
            redis_timeout_seconds=settings.redis_timeout_seconds,
            http=self.http,
            gateway_url=settings.dwp_gateway_url,
            task_reporter=self.task_reporter,
        )
        self._runs: dict[str, asyncio.Task[None]] = {}
        self.runs_started = 0  # created or adopted here, since start-up
        self._background: list[asyncio.Task[None]] = []
        self._scan_from = 0

    async def __aenter__(self) -> Runtime:
        self._background = [
            asyncio.create_task(self.hub.run(), name="aura-signal-hub"),
            asyncio.create_task(self._keep_leases(), name="aura-leases"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.drain()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.task_reporter is not None:
            await self.task_reporter.aclose()
        await self.http.aclose()
        await self.redis.aclose()

    def feed(self, session_id: str) -> SessionFeed:
        return SessionFeed(session_id, self.session_store, self.notifier, self.sessions.local)

    def start(self, session: Session) -> None:
        """Run the session in a task owned by this runtime, not by the HTTP request."""
        task = asyncio.create_task(self.runner.run(session), name=f"aura-session-{session.id}")
        self.runs_started += 1
        self._runs[session.id] = task
        task.add_done_callback(lambda _: self._runs.pop(session.id, None))

    async def drain(self) -> None:
        """Stop driving sessions without ending them: streams end, leases go, others adopt.

        Each session stays in Redis where it was; a replica (or this process,
        restarted) takes it over as soon as it sees the lease gone.
        """
        self.notifier.drain()
        sessions = self.sessions.all()
        for session in sessions:
            session.detached = True
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        if runs:
            log.info("draining %d session run(s)", len(runs))
            await asyncio.wait(runs, timeout=self.settings.shutdown_grace_seconds)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                for session in sessions:
                    await self.session_store.release(session.id)
                await self.session_store.stop_heartbeat()

    # -- leases and adoption -----------------------------------------------------------------
    async def _keep_leases(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            try:
                await self._heartbeat_and_adopt()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("lease upkeep failed (%s: %s); retrying", type(exc).__name__, exc)
            except Exception:
                log.exception("lease upkeep failed")
            await asyncio.sleep(interval)

    async def _heartbeat_and_adopt(self) -> None:
        if self.notifier.draining:
            return
        store, timeout = self.session_store, self.settings.redis_timeout_seconds
        async with asyncio.timeout(timeout):
            continuous = await store.heartbeat()
        local = self.sessions.all()
        if not continuous and local:
            # Our heartbeat lapsed (a pause, an outage): others may have taken sessions over.
            async with asyncio.timeout(timeout):
                owners = await store.owners([s.id for s in local])
            for session, owner in zip(local, owners, strict=True):
                if owner != self.instance_id:
                    log.warning("session %s: taken over by %s; stopping here", session.id, owner)
                    self._detach(session)
        # One page of the live set per round, so a large set costs a bounded amount each time.
        async with asyncio.timeout(timeout):
            page = await store.live_sessions(self._scan_from, _ADOPTION_PAGE)
        self._scan_from = 0 if len(page) < _ADOPTION_PAGE else self._scan_from + len(page)
        candidates = [sid for sid in page if self.sessions.local(sid) is None]
        async with asyncio.timeout(timeout):
            owners = await store.owners(candidates)
            others = {o for o in owners if o is not None and o != self.instance_id}
            alive = await store.alive(others) if others else set()
        for session_id, owner in zip(candidates, owners, strict=True):
            if owner in alive or self.notifier.draining:
                continue
            async with asyncio.timeout(timeout):
                if await store.take_over(session_id, owner):
                    await self._adopt(session_id)

    async def _adopt(self, session_id: str) -> None:
        fields = await self.session_store.load(session_id)
        if fields is None or fields.get("state") in (State.DONE.value, State.ABORTED.value):
            await self.session_store.forget(session_id)
            await self.session_store.release(session_id)
            return
        try:
            session = self.sessions.adopt(fields)
        except (KeyError, ValueError, TypeError) as exc:
            # An unreadable snapshot must not block the adoption of every session after it.
            log.error("session %s: snapshot unreadable (%s: %s); dropping it from the live set",
                      session_id, type(exc).__name__, exc)
            await self.session_store.forget(session_id)
            await self.session_store.release(session_id)
            return
        log.info("adopted session %s in state %s at event %d", session_id, fields.get("state"), session.seq)
        self.start(session)

    def _detach(self, session: Session) -> None:
        session.detached = True
        task = self._runs.get(session.id)
        if task is not None:
            task.cancel()
        else:
            self.sessions.drop(session)

    def _cancel_requested(self, session_id: str) -> None:
        """A cancel published for a session: act on it if this process drives it."""
        session = self.sessions.local(session_id)
        task = self._runs.get(session_id)
        if session is None or task is None:
            return
        session.cancel_requested = True
        task.cancel()

    # -- health ---------------------------------------------------------------------------------
    async def redis_ok(self) -> bool:
        try:
            async with asyncio.timeout(min(1.0, self.settings.redis_timeout_seconds)):
                return bool(await self.redis.commands.ping())
        except Exception:
            return False

    def counts(self) -> dict[str, int]:
        live = [s for s in self.sessions.all() if not s.model.is_final]
        return {
            "live": len(live),
            "awaitingApproval": sum(1 for s in live if s.state is State.AWAITING_APPROVAL),
            "driven": len(self.sessions),
            "started": self.runs_started,
        }


def default_tools(settings: Settings) -> ToolRegistry:
    """Built-ins, then aura/tools.json, then the user's AURA_TOOLS_FILE (later names win)."""
    registry = builtin_tools().with_tools(load_tools())
    if settings.tools_file:
        registry = registry.with_tools(load_tools(Path(settings.tools_file)))
    return registry


def default_planner(settings: Settings, http: httpx.AsyncClient, tools: ToolRegistry) -> Planner:
    if settings.llm_base_url is None or settings.llm_model is None:
        return RuleBasedPlanner()
    llm = LlmSettings(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_seconds=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
    )
    return LlmPlanner(ChatClient(llm, http), tools)
