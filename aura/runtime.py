"""Everything one Aura process owns, and its lifecycle (started and stopped by the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from statemachines import State, new_session_machine

from pathlib import Path

import httpx

from aura.agent import AgentRunner
from aura.agent_tasks import AgentTaskReporter
from aura.http_tools import load_tools
from aura.llm import ChatClient, LlmSettings
from aura.llm_planner import LlmPlanner
from aura.auth import TokenVerifier
from aura.config import Settings
from aura.hitl_store import HitlStore
from aura.planner import Planner, RuleBasedPlanner
from aura.redis_backend import RedisClients, connect
from aura.session import Session, SessionRegistry
from aura.signal_hub import SignalHub
from aura.tools import ToolRegistry, builtin_tools

log = logging.getLogger(__name__)


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
        self.redis = redis if redis is not None else connect(settings)
        self.verifier = TokenVerifier(settings.jwt_secret, leeway_seconds=settings.jwt_leeway_seconds)
        self.store = HitlStore(self.redis.commands)
        self.hub = SignalHub(
            self.redis.subscriber,
            self.store,
            sweep_seconds=settings.signal_sweep_seconds,
            redis_timeout_seconds=settings.redis_timeout_seconds,
        )
        self.sessions = SessionRegistry(new_session_machine(), retention_seconds=settings.session_retention_seconds)
        self.tools = tools if tools is not None else default_tools(settings)
        # One outbound client for the LLM, DWP tools and AgentTask reports.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.tool_timeout_seconds))
        self.task_reporter = (
            AgentTaskReporter(self.http, settings.agent_task_url, timeout_seconds=settings.tool_timeout_seconds)
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
        self._runs: set[asyncio.Task[None]] = set()
        self._hub_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Runtime:
        self._hub_task = asyncio.create_task(self.hub.run(), name="aura-signal-hub")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.drain()
        if self._hub_task is not None:
            self._hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub_task
        if self.task_reporter is not None:
            await self.task_reporter.aclose()
        await self.http.aclose()
        await self.redis.aclose()

    def start(self, session: Session) -> None:
        """Run the session in a task owned by this runtime, not by the HTTP request."""
        task = asyncio.create_task(self.runner.run(session), name=f"aura-session-{session.id}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def drain(self) -> None:
        """Cancel every run (each ends its stream with `error` and [DONE]) within the grace time."""
        runs = list(self._runs)
        if not runs:
            return
        log.info("draining %d session run(s)", len(runs))
        for task in runs:
            task.cancel()
        await asyncio.wait(runs, timeout=self.settings.shutdown_grace_seconds)

    async def redis_ok(self) -> bool:
        try:
            async with asyncio.timeout(min(1.0, self.settings.redis_timeout_seconds)):
                return bool(await self.redis.commands.ping())
        except Exception:
            return False

    def counts(self) -> dict[str, int]:
        live = self.sessions.live()
        return {
            "live": len(live),
            "awaitingApproval": sum(1 for s in live if s.state is State.AWAITING_APPROVAL),
            "retained": len(self.sessions),
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
