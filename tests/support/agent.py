"""The agent run's parts without Redis: the log writer over MemoryLogStore, the hub and gate over
MemoryApprovals, fake tools and a fixed planner, and helpers to read the log back.

Nothing here connects to Redis: the one ``Redis()`` client is only handed to constructors
(the hub's subscriber, the tools' context) and never used, since the hub's loop is never
run and the fake tools ignore ``ctx.redis``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis

from statemachines import SessionMachine, State

from aura.agent.approval import ApprovalGate
from aura.agent.runner import AgentRunner, ToolEnvironment
from aura.agent.tools import Tool, ToolContext, ToolRegistry
from aura.auth import Principal
from aura.errors import PlannerError
from aura.hitl.hub import SignalHub
from aura.hitl.signals import Decision, Signal
from aura.ids import new_session_id
from aura.metrics import Metrics
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.plan import Plan, PlanStep, StepOutcome
from aura.session.registry import SessionRegistry
from aura.session.replay import ReplayCache
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import Snapshot
from tests.support.memory import CountingQuotas, MemoryApprovals, MemoryLogStore
from tests.support.waiting import wait_until

T = TypeVar("T")
WAIT_SECONDS = 5.0  # generous bound for any wait of a test, on a loaded 2-core CI machine
OWNER = Principal("1", "1")

Logged = tuple[str, dict[str, Any]]  # (event type, the payload's ``data``)
ToolBody = Callable[[Mapping[str, Any], ToolContext], Awaitable[str]]


# -- fakes ------------------------------------------------------------------------------------
@dataclass
class FakeTool:
    """A Tool whose work is ``body``; records the params of every call."""

    name: str
    body: ToolBody
    requires_approval: bool = False
    description: str = "a fake tool"
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, params: Mapping[str, Any], ctx: ToolContext) -> str:
        self.calls.append(dict(params))
        return await self.body(params, ctx)


def returning(text: str) -> ToolBody:
    async def body(params: Mapping[str, Any], ctx: ToolContext) -> str:
        return text

    return body


@dataclass
class FixedPlanner:
    """A Planner with a fixed plan (or a PlannerError) and a fixed answer."""

    plan_or_error: Plan | PlannerError
    chunks: Sequence[str] = ("The answer.",)
    plans: int = 0

    async def plan(self, prompt: str, context: Mapping[str, Any]) -> Plan:
        self.plans += 1
        if isinstance(self.plan_or_error, PlannerError):
            raise self.plan_or_error
        return self.plan_or_error

    async def answer(self, prompt: str, plan: Plan, outcomes: Sequence[StepOutcome]) -> AsyncIterator[str]:
        for chunk in self.chunks:
            yield chunk


@dataclass
class HookedApprovals(MemoryApprovals):
    """MemoryApprovals that calls ``on_create`` right after a request is stored (before `hitl` is emitted),
    and can fail creating requests or re-reading decisions as a Redis that went away would."""

    on_create: Callable[[dict[str, Any]], None] | None = None
    fail_create: BaseException | None = None
    fail_recheck: BaseException | None = None

    async def create_request(self, record: dict[str, Any]) -> None:
        if self.fail_create is not None:
            raise self.fail_create
        await super().create_request(record)
        if self.on_create is not None:
            self.on_create(record)

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        if self.fail_recheck is not None:
            self.rechecks += 1
            raise self.fail_recheck
        return await super().decisions_for(pending)


# -- the parts ----------------------------------------------------------------------------------
@dataclass
class Harness:
    """One process's parts for its sessions, all in memory."""

    approval_timeout: float = 30.0
    store: MemoryLogStore = field(default_factory=MemoryLogStore)
    approvals: HookedApprovals = field(default_factory=HookedApprovals)
    replay: ReplayCache = field(default_factory=ReplayCache)
    redis: Redis = field(default_factory=Redis)  # never connected
    machine: SessionMachine = field(default_factory=SessionMachine)
    quotas: CountingQuotas = field(default_factory=CountingQuotas)
    metrics: Metrics = field(default_factory=Metrics)  # the parts' own registry, for tests that read it
    writer: LogWriter = field(init=False)
    registry: SessionRegistry = field(init=False)
    hub: SignalHub = field(init=False)
    gate: ApprovalGate = field(init=False)

    def __post_init__(self) -> None:
        metrics = self.metrics
        self.writer = LogWriter(self.store, Notifier(), self.replay, redis_timeout_seconds=1, metrics=metrics)
        self.registry = SessionRegistry(self.machine, self.writer, self.quotas, redis_timeout_seconds=1,
                                        metrics=metrics)
        self.hub = SignalHub(self.redis, self.approvals, sweep_seconds=60, redis_timeout_seconds=1, metrics=metrics)
        self.gate = ApprovalGate(self.hub, self.approvals, self.writer, timeout_seconds=self.approval_timeout,
                                 redis_timeout_seconds=1, metrics=metrics)

    async def aclose(self) -> None:
        await self.writer.aclose()
        await self.redis.aclose()

    def runner(self, planner: FixedPlanner, tools: Sequence[Tool] = (), *, tool_timeout: float = 5.0,
               workspace_events: bool = False) -> AgentRunner:
        """A runner; by default with the documented events only (``AURA_WORKSPACE_EVENTS=false``)."""
        environment = ToolEnvironment(redis=self.redis, timeout_seconds=tool_timeout)
        return AgentRunner(planner, ToolRegistry(list(tools)), self.gate, self.writer, self.registry, environment,
                           workspace_events=workspace_events, metrics=self.metrics)

    def subscribe(self) -> None:
        """What the hub's loop does once subscribed (the loop itself is never run here)."""
        self.hub.generation += 1
        self.hub.subscribed.set()

    def new_session(self, prompt: str = "hi") -> Session:
        """A new session in `planning`, attached like SessionRegistry.create does (without storing it)."""
        session = Session(new_session_id(), OWNER, SessionRequest(prompt, {}), on_transition=self.metrics.transition)
        self.machine.add(session.model)
        self.writer.open(session)
        return session

    def adopt(
        self,
        plan: Plan,
        *,
        state: State = State.EXECUTING,
        seq: int = 5,
        step: int = 0,
        outcomes: dict[str, str | None] | None = None,
        tool_started: str | None = None,
        answered_chars: int = 0,
        pending_request_id: str | None = None,
        approval_deadline: float | None = None,
    ) -> Session:
        """A session another instance drove up to ``seq``, adopted from its snapshot."""
        snapshot = Snapshot(
            session_id=new_session_id(),
            tenant_id=OWNER.tenant_id,
            user_id=OWNER.user_id,
            prompt="hi",
            created_at=time.time(),
            state=state,
            seq=seq,
            step=step,
            plan=plan,
            outcomes=outcomes or {},
            tool_started=tool_started,
            answered_chars=answered_chars,
            pending_request_id=pending_request_id,
            approval_deadline=approval_deadline,
        )
        return self.registry.adopt(snapshot)

    def approval(self, session: Session) -> str:
        """The id of the one request created for ``session``."""
        [request_id] = [rid for rid, record in self.approvals.requests.items() if record["sessionId"] == session.id]
        return request_id

    def deliver(self, session: Session, request_id: str, decision: Decision, reason: str | None = None) -> bool:
        """A decision made as main-service makes it: the record first, then its Pub/Sub message (CONTRACT §4.1)."""
        signal = self.approvals.decide(session.id, request_id, decision, reason)
        return self.hub.deliver(session.id, signal.to_json())

    def logged(self, session: Session) -> list[Logged]:
        return logged(self.store, session)


# -- reading the log back -------------------------------------------------------------------------
def decode(frame: str) -> Logged:
    lines = frame.split("\n")
    assert lines[0].startswith("id: ") and lines[1].startswith("event: ") and lines[2].startswith("data: "), frame
    payload = json.loads(lines[2][len("data: "):])
    assert payload["type"] == lines[1][len("event: "):]
    return str(payload["type"]), dict(payload["data"])


def logged(store: MemoryLogStore, session: Session) -> list[Logged]:
    """What Redis has of ``session``'s log, in order."""
    return [decode(frame) for _, frame in store.frames.get(session.id, [])]


def kinds(events: Sequence[Logged]) -> list[str]:
    return [type_ for type_, _ in events]


def statuses(events: Sequence[Logged], type_: str) -> list[str]:
    return [data["status"] for kind, data in events if kind == type_]


def state_moves(events: Sequence[Logged]) -> list[tuple[str, str]]:
    return [(data["from"], data["to"]) for kind, data in events if kind == "state"]


# -- waiting --------------------------------------------------------------------------------------
async def until(condition: Callable[[], bool], *, timeout: float = WAIT_SECONDS) -> None:
    """Wait (bounded) until ``condition`` holds, letting the other tasks run meanwhile."""
    await wait_until(condition, timeout, interval=0.001)


async def bounded(call: Awaitable[T], timeout: float = WAIT_SECONDS) -> T:
    async with asyncio.timeout(timeout):
        return await call


def tool_step(tool: str, params: dict[str, Any] | None = None, step_id: str = "step-1") -> PlanStep:
    return PlanStep(step_id, f"Run {tool}", f"Runs {tool}", tool, params or {})


def tool_plan(*steps: PlanStep) -> Plan:
    return Plan(thought="I will use a tool.", steps=list(steps))


def error_of(events: Sequence[Logged]) -> dict[str, Any]:
    """The payload of the one `error` event among ``events``."""
    [error] = [data for kind, data in events if kind == "error"]
    return error


def explanation_of(events: Sequence[Logged]) -> dict[str, Any]:
    """The explanatory `content` of an aborted session: the event right before its one `error`."""
    [at] = [index for index, (kind, _) in enumerate(events) if kind == "error"]
    kind, data = events[at - 1]
    assert kind == "content", f"the event before `error` is {kind!r}"
    return data


def plain_plan(thought: str = "No tool is needed.") -> Plan:
    return Plan(thought=thought, steps=[PlanStep("step-1", "Answer", "Compose an answer")])


# -- the AI-workspace page's events (docs/EVENTS.md) --------------------------------------------------
def assert_workspace_events(events: Sequence[Logged]) -> None:
    """What the AI-workspace page needs of a whole session's events:
    - each `thought` is followed at once by its `thought_chain` (the kind in ``type``);
    - each tool call's end (`tool_execution` completed or failed) is followed at once by the one
      `action_execution` of that call, with the same fields; no other `action_execution` exists;
    - at most one further `thought_chain`, the plan, right after the last `plan_step`."""
    extra_chains = 0
    for index, (kind, data) in enumerate(events):
        following = events[index + 1] if index + 1 < len(events) else None
        if kind == "thought":
            assert following == ("thought_chain", {"type": data["thoughtType"], "content": data["content"],
                                                   "timestamp": following[1]["timestamp"] if following else 0}), (
                f"thought {index} without its thought_chain: {following}")
        elif kind == "tool_execution" and data["status"] != "executing":
            assert following == ("action_execution", data), f"tool end {index} without its card: {following}"
        elif kind == "action_execution":
            previous = events[index - 1]
            assert previous == ("tool_execution", data) and data["status"] in ("completed", "failed"), (
                f"an action_execution {index} that is not a call's end: {data}")
        elif kind == "thought_chain" and (index == 0 or events[index - 1][0] != "thought"):
            extra_chains += 1
            assert events[index - 1][0] == "plan_step" and data["type"] == "planning", (index, data)
    assert extra_chains <= 1


def terminal_cards(events: Sequence[Logged]) -> list[dict[str, Any]]:
    return [data for kind, data in events if kind == "action_execution"]
