"""The composition root: every part of one Aura process, built from its settings.

Nothing here runs; :class:`aura.runtime.Runtime` starts and stops what needs it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from statemachines import new_session_machine

from aura.agent.approval import ApprovalGate
from aura.agent.http_tools import load_tools
from aura.agent.llm import ChatClient, LlmSettings
from aura.agent.llm_planner import LlmPlanner
from aura.agent.planner import Planner, RuleBasedPlanner
from aura.agent.runner import AgentRunner, ToolEnvironment
from aura.agent.runs import RunSupervisor
from aura.agent.tools import ToolRegistry, builtin_tools
from aura.auth import Delegator, TokenVerifier
from aura.config import Settings
from aura.dwp.agent_tasks import AgentTaskReporter
from aura.hitl.hub import SignalHub
from aura.hitl.store import HitlStore
from aura.metrics import Metrics
from aura.session.feed import Feeds
from aura.session.leases import LeaseKeeper
from aura.session.listing import LiveSessions
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.replication import ReplicaAcks
from aura.session.quotas import QuotaLimits, SessionQuotas
from aura.session.registry import SessionRegistry
from aura.session.replay import ReplayCache
from aura.session.store import SessionStore
from aura.storage.clients import RedisClients, connect


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    instance_id: str
    redis: RedisClients
    http: httpx.AsyncClient  # one outbound client: the LLM, DWP tools, AgentTask reports
    verifier: TokenVerifier
    hitl_store: HitlStore
    session_store: SessionStore
    notifier: Notifier
    replay: ReplayCache
    writer: LogWriter
    registry: SessionRegistry
    hub: SignalHub
    tools: ToolRegistry
    runs: RunSupervisor
    leases: LeaseKeeper
    task_reporter: AgentTaskReporter | None
    feeds: Feeds
    live_sessions: LiveSessions  # a tenant's live sessions, for the console's list
    metrics: Metrics  # this runtime's registry, served at GET /metrics unless AURA_METRICS=false


def build(
    settings: Settings,
    *,
    redis: RedisClients | None = None,
    planner: Planner | None = None,
    tools: ToolRegistry | None = None,
) -> Services:
    instance_id = f"aura-{uuid.uuid4().hex[:12]}"
    metrics = Metrics()
    clients = redis if redis is not None else connect(settings)
    timeout = settings.redis_timeout_seconds
    quotas = SessionQuotas(
        clients.commands,
        QuotaLimits(
            live_per_user=settings.max_live_sessions_per_user,
            live_per_tenant=settings.max_live_sessions_per_tenant,
            kept_per_user=settings.max_kept_sessions_per_user,
            live_ttl_seconds=settings.session_ttl_seconds,
            finished_ttl_seconds=settings.finished_session_ttl_seconds,
        ),
        redis_timeout_seconds=timeout,
    )
    session_store = SessionStore(
        clients.commands,
        instance_id,
        ttl_seconds=settings.session_ttl_seconds,
        max_events=settings.session_max_events,
        lease_seconds=settings.lease_seconds,
        finished_ttl_seconds=settings.finished_session_ttl_seconds,
        quotas=quotas,
    )
    notifier, replay = Notifier(), ReplayCache()
    writer = LogWriter(session_store, notifier, replay, redis_timeout_seconds=timeout, metrics=metrics)
    registry = SessionRegistry(new_session_machine(), writer, quotas, redis_timeout_seconds=timeout, metrics=metrics)
    metrics.observe_sessions(lambda: [session.state for session in registry.all()])
    hitl_store = HitlStore(clients.commands)
    http = httpx.AsyncClient(timeout=httpx.Timeout(settings.tool_timeout_seconds))
    toolset = tools if tools is not None else default_tools(settings)
    hub = SignalHub(clients.subscriber, hitl_store, sweep_seconds=settings.signal_sweep_seconds,
                    redis_timeout_seconds=timeout, on_log_grew=notifier.wake,
                    before_subscribe=lambda: clients.initialize(timeout), metrics=metrics)
    gate = ApprovalGate(hub, hitl_store, writer, timeout_seconds=settings.hitl_timeout_seconds,
                        redis_timeout_seconds=timeout, metrics=metrics)
    verifier = TokenVerifier(settings.jwt_secret, leeway_seconds=settings.jwt_leeway_seconds,
                             issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    # DWP calls as the user carry tokens minted from the session's delegation, never the user's own.
    delegator = Delegator(verifier, lifetime_seconds=settings.delegated_token_seconds)
    environment = ToolEnvironment(clients.commands, http, settings.dwp_gateway_url, settings.tool_timeout_seconds,
                                  delegator=delegator)
    chosen_planner = planner if planner is not None else default_planner(settings, http, toolset, metrics)
    replicas = (
        ReplicaAcks(session_store, settings.replica_acks, timeout_seconds=settings.redis_replica_ack_timeout_seconds,
                    redis_timeout_seconds=timeout)
        if settings.replica_acks > 0 and not clients.embedded
        else None
    )
    runner = AgentRunner(chosen_planner, toolset, gate, writer, registry, environment, replicas,
                         workspace_events=settings.workspace_events, metrics=metrics)
    # A follower on another replica says so for at least a lease, refreshed every half of it.
    feeds = Feeds(session_store, notifier, replay, hub, timeout, max(settings.lease_seconds, 2 * settings.heartbeat_seconds))
    reporter = (
        AgentTaskReporter(http, settings.agent_task_url, feeds, timeout_seconds=settings.tool_timeout_seconds,
                          delegator=delegator)
        if settings.agent_task_url
        else None
    )
    runs = RunSupervisor(runner, registry, on_new_session=reporter.track if reporter is not None else None)
    hub.on_cancel = runs.cancel_requested
    leases = LeaseKeeper(session_store, registry, lease_seconds=settings.lease_seconds, redis_timeout_seconds=timeout,
                         on_adopted=runs.start, on_taken=runs.taken, metrics=metrics)
    runs.on_stranded = leases.strand
    return Services(
        settings=settings, instance_id=instance_id, redis=clients, http=http, verifier=verifier,
        hitl_store=hitl_store, session_store=session_store, notifier=notifier, replay=replay, writer=writer,
        registry=registry, hub=hub, tools=toolset, runs=runs, leases=leases, task_reporter=reporter, feeds=feeds,
        live_sessions=LiveSessions(quotas, session_store, redis_timeout_seconds=timeout),
        metrics=metrics,
    )


def default_tools(settings: Settings) -> ToolRegistry:
    """Built-ins, then aura/agent/tools.json, then the user's AURA_TOOLS_FILE (later names win)."""
    registry = builtin_tools().with_tools(load_tools())
    if settings.tools_file:
        registry = registry.with_tools(load_tools(Path(settings.tools_file)))
    return registry


def default_planner(
    settings: Settings, http: httpx.AsyncClient, tools: ToolRegistry, metrics: Metrics | None = None
) -> Planner:
    if settings.llm_base_url is None or settings.llm_model is None:
        return RuleBasedPlanner()
    llm = LlmSettings(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_seconds=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
    )
    return LlmPlanner(ChatClient(llm, http, metrics=metrics), tools)
