"""The run when Redis cannot vouch for it: a side effect whose `executing` no replica acknowledged is
not run, and a session whose log Redis no longer takes is stranded (left for the lease keeper to
drive again) rather than ended. In memory: the runner Harness and its fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from statemachines import AbortReason, State

from aura.agent.approval import ApprovalGate
from aura.agent.runner import AgentRunner, ToolEnvironment
from aura.agent.runs import RunSupervisor
from aura.agent.tools import Tool, ToolContext, ToolRegistry
from aura.errors import ToolError
from aura.hitl.signals import Decision
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.registry import SessionRegistry
from aura.session.replication import ReplicaAcks
from aura.session.session import Session
from aura.session.snapshot import F
from tests.support.agent import (
    error_of,
    tool_plan,
    FakeTool,
    FixedPlanner,
    Harness,
    Logged,
    bounded,
    decode,
    kinds,
    returning,
    state_moves,
    statuses,
    tool_step,
    until,
)

pytestmark = pytest.mark.anyio

NOT_REPLICATED = "not run: 0 of 1 required Redis replica(s) acknowledged the write"


@dataclass
class Parts(Harness):
    """The Harness, with a log writer that gives up on Redis after one quick retry (not ~25 s), and a
    runner that may wait for replicas."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.writer = LogWriter(self.store, Notifier(), self.replay, retry_backoff=(0.01,), redis_timeout_seconds=1)
        self.registry = SessionRegistry(self.machine, self.writer, self.quotas, redis_timeout_seconds=1)
        self.gate = ApprovalGate(self.hub, self.approvals, self.writer, timeout_seconds=self.approval_timeout,
                                 redis_timeout_seconds=1)

    def logged_by_id(self, session_id: str) -> list[Logged]:
        return [decode(frame) for _, frame in self.store.frames.get(session_id, [])]

    def replicas(self, acknowledged: int = 0, *, hang: bool = False) -> Replicas:
        return Replicas(self, acknowledged, hang)

    def runner_with(
        self, planner: FixedPlanner, tools: Sequence[Tool], replicas: Replicas | None, *, required: int = 1,
        wait_seconds: float = 0.05,
    ) -> AgentRunner:
        environment = ToolEnvironment(redis=self.redis, timeout_seconds=5)
        acks = None if replicas is None else ReplicaAcks(replicas, required, timeout_seconds=wait_seconds,
                                                        redis_timeout_seconds=0.05)
        return AgentRunner(planner, ToolRegistry(list(tools)), self.gate, self.writer, self.registry, environment, acks)


@dataclass
class Replicas:
    """A ReplicatingStore answering ``acknowledged`` (or hanging); records what the log held at each call."""

    parts: Parts
    acknowledged: int = 0
    hang: bool = False
    calls: list[tuple[str, int, int]] = field(default_factory=list)
    logged_at_call: list[list[Logged]] = field(default_factory=list)
    snapshot_at_call: list[dict[str, str]] = field(default_factory=list)
    order: list[str] | None = None

    async def replicate(self, session_id: str, replicas: int, timeout_ms: int) -> int:
        self.calls.append((session_id, replicas, timeout_ms))
        self.logged_at_call.append(self.parts.logged_by_id(session_id))
        self.snapshot_at_call.append(dict(self.parts.store.fields.get(session_id, {})))
        if self.order is not None:
            self.order.append("replicate")
        if self.hang:
            await asyncio.Event().wait()
        return self.acknowledged


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    harness = Parts()
    yield harness
    await harness.aclose()


async def run_approved(parts: Parts, runner: AgentRunner, session: Session) -> None:
    """Run ``session`` to its end, approving its one approval request when it comes."""
    parts.subscribe()
    task = asyncio.create_task(runner.run(session))
    await until(lambda: parts.hub.waiting == 1 and session.state is State.AWAITING_APPROVAL)
    assert parts.deliver(session, parts.approval(session), Decision.APPROVED)
    await bounded(task)


# -- (a) replicas before a side effect -------------------------------------------------------------------
async def test_a_tool_needing_approval_is_not_run_when_no_replica_acknowledged_its_executing(parts: Parts) -> None:
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    replicas = parts.replicas(acknowledged=0)
    session = parts.new_session()

    await run_approved(parts, parts.runner_with(FixedPlanner(tool_plan(tool_step("send"))), [tool], replicas), session)

    assert tool.calls == []
    assert replicas.calls == [(session.id, 1, 50)]
    # Asked only once `executing` (and the snapshot naming the running tool) was in Redis.
    assert replicas.logged_at_call[0][-1] == (
        "tool_execution", {"tool": "send", "params": {}, "stepId": "step-1", "status": "executing"})
    assert replicas.snapshot_at_call[0][F.TOOL_STARTED] == "step-1"
    events = parts.logged(session)
    # With the AI-workspace page's events (on by default): the call's one card, failed.
    assert kinds(events)[-7:] == ["tool_execution", "tool_execution", "action_execution", "plan_step_update", "state",
                                  "content", "error"]
    assert events[-5][1] == {"tool": "send", "params": {}, "stepId": "step-1", "status": "failed",
                             "error": NOT_REPLICATED}
    assert statuses(events, "tool_execution") == ["executing", "failed"]
    [failed] = [data for kind, data in events if kind == "tool_execution" and data["status"] == "failed"]
    assert failed["error"].startswith("not run: 0 of 1 required Redis replica(s)")
    assert failed["error"] == NOT_REPLICATED
    assert statuses(events, "plan_step_update")[-1] == "failed"
    assert state_moves(events)[-1] == ("executing", "aborted")
    error = error_of(events)
    assert error["message"] == f"send failed: {NOT_REPLICATED}"
    assert (error["errorType"], error["reason"]) == ("ToolError", "failed")
    assert session.state is State.ABORTED and session.model.abort_reason is AbortReason.FAILED
    assert session.id in parts.store.ended and not session.stranded
    assert parts.store.fields[session.id][F.TOOL_STARTED] == ""


async def test_a_replica_wait_that_hangs_does_not_run_the_tool_either(parts: Parts) -> None:
    tool = FakeTool("send", returning("sent"), requires_approval=True)
    session = parts.new_session()
    runner = parts.runner_with(FixedPlanner(tool_plan(tool_step("send"))), [tool], parts.replicas(hang=True),
                               wait_seconds=0.01)

    await run_approved(parts, runner, session)

    assert tool.calls == []
    [failed] = [d for k, d in parts.logged(session) if k == "tool_execution" and d["status"] == "failed"]
    assert failed["error"] == "not run: Redis is unavailable: did not answer in time"
    assert session.state is State.ABORTED and session.id in parts.store.ended


async def test_a_tool_needing_approval_runs_after_enough_replicas_acknowledged(parts: Parts) -> None:
    order: list[str] = []

    async def body(params: Mapping[str, Any], ctx: ToolContext) -> str:
        order.append("tool")
        return "sent"

    tool = FakeTool("send", body, requires_approval=True)
    replicas = parts.replicas(acknowledged=1)
    replicas.order = order
    session = parts.new_session()

    await run_approved(parts, parts.runner_with(FixedPlanner(tool_plan(tool_step("send"))), [tool], replicas), session)

    assert order == ["replicate", "tool"]
    assert tool.calls == [{}] and replicas.calls == [(session.id, 1, 50)]
    assert statuses(parts.logged(session), "tool_execution") == ["executing", "completed"]
    assert session.state is State.DONE


async def test_a_tool_without_approval_runs_without_any_replica_check(parts: Parts) -> None:
    tool = FakeTool("fetch", returning("fetched"))
    replicas = parts.replicas(acknowledged=0)  # would refuse, were it asked
    session = parts.new_session()

    await bounded(parts.runner_with(FixedPlanner(tool_plan(tool_step("fetch"))), [tool], replicas).run(session))

    assert replicas.calls == []
    assert tool.calls == [{}]
    assert statuses(parts.logged(session), "tool_execution") == ["executing", "completed"]
    assert session.state is State.DONE and session.id in parts.store.ended


# -- (b) a log Redis no longer takes: stranded ---------------------------------------------------------
def redis_away(parts: Harness) -> None:
    """From now on every commit fails (more failures than the writer has attempts)."""
    parts.store.failures.extend(RedisConnectionError("redis went away") for _ in range(20))


@dataclass
class Supervised:
    supervisor: RunSupervisor
    stranded: list[tuple[str, bool]] = field(default_factory=list)  # (session id, its run was over by then)

    def start(self, session: Session) -> asyncio.Task[None]:
        return self.supervisor.start(session)


def supervise(parts: Parts, runner: AgentRunner) -> Supervised:
    supervised = Supervised(RunSupervisor(runner, parts.registry))

    def on_stranded(session_id: str) -> None:
        supervised.stranded.append((session_id, supervised.supervisor.run_of(session_id) is None))

    supervised.supervisor.on_stranded = on_stranded
    return supervised


async def run_fetch(parts: Parts, body: Any) -> tuple[FakeTool, Session, Supervised, asyncio.Task[None]]:
    """A new session whose one step is the tool ``fetch`` running ``body``, run to its end under supervision."""
    tool = FakeTool("fetch", body)
    session = parts.new_session()
    supervised = supervise(parts, parts.runner_with(FixedPlanner(tool_plan(tool_step("fetch"))), [tool], None))
    task = supervised.start(session)
    await bounded(asyncio.wait({task}))
    return tool, session, supervised, task


async def test_a_session_whose_log_redis_no_longer_takes_is_stranded_and_handed_to_the_keeper(parts: Parts) -> None:
    tool = FakeTool("fetch", returning("fetched"))
    plan = tool_plan(tool_step("fetch"))
    session = parts.adopt(plan, seq=5)  # tracked by the registry, as every driven session is
    supervised = supervise(parts, parts.runner_with(FixedPlanner(plan), [tool], None))
    redis_away(parts)

    task = supervised.start(session)
    await bounded(asyncio.wait({task}))
    await until(lambda: bool(supervised.stranded))

    assert task.exception() is None
    assert session.stranded and session.detached
    assert tool.calls == []  # its `executing` never reached Redis: not run
    assert parts.store.frames.get(session.id, []) == []  # nothing written, the abort included
    assert session.id not in parts.store.ended
    assert supervised.stranded == [(session.id, True)]  # once, after the run's task ended
    assert parts.registry.local(session.id) is None  # so that the keeper may adopt it again
    await asyncio.sleep(0.05)
    assert len(supervised.stranded) == 1


async def test_a_session_whose_abort_redis_no_longer_takes_is_stranded_with_the_abort_unwritten(
    parts: Parts,
) -> None:
    async def fail_as_redis_goes(params: Mapping[str, Any], ctx: ToolContext) -> str:
        redis_away(parts)
        raise ToolError("fetch", "upstream said no")

    tool, session, supervised, task = await run_fetch(parts, fail_as_redis_goes)
    await until(lambda: bool(supervised.stranded))

    assert tool.calls == [{}]
    assert session.stranded and session.detached
    assert session.state is State.ABORTED  # here; Redis still has it running its tool
    events = parts.logged(session)
    assert statuses(events, "tool_execution") == ["executing"]  # what Redis took before it went away
    assert "error" not in kinds(events) and session.id not in parts.store.ended
    assert parts.store.fields[session.id][F.TOOL_STARTED] == "step-1"
    assert supervised.stranded == [(session.id, True)]


@pytest.mark.parametrize("ending", ["done", "lease-lost", "tool-failed"])
async def test_a_session_that_ends_or_is_taken_is_not_reported_stranded(parts: Parts, ending: str) -> None:
    async def body(params: Mapping[str, Any], ctx: ToolContext) -> str:
        if ending == "lease-lost":
            parts.store.lost.add(ctx.session_id)
        if ending == "tool-failed":
            raise RuntimeError("boom")
        return "fetched"

    tool, session, supervised, task = await run_fetch(parts, body)
    await asyncio.sleep(0.01)

    assert not session.stranded and supervised.stranded == []
    assert (session.id in parts.store.ended) is (ending != "lease-lost")


async def test_a_session_whose_final_commit_redis_no_longer_takes_is_stranded_too(parts: Parts) -> None:
    """Redis goes away while the tool runs: the tool's result, the answer, `done` and the end of the
    log are all in the commit that fails. The lease is still ours and our heartbeat goes on, so
    nobody else adopts the session: unless it is stranded, its log never ends."""

    async def body(params: Mapping[str, Any], ctx: ToolContext) -> str:
        redis_away(parts)
        return "fetched"

    tool, session, supervised, task = await run_fetch(parts, body)
    await asyncio.sleep(0.01)

    assert tool.calls == [{}]
    assert session.id not in parts.store.ended  # the end never reached Redis
    assert statuses(parts.logged(session), "tool_execution") == ["executing"]
    assert session.stranded, "a run whose last commit failed for good was dropped without being stranded"
    assert supervised.stranded == [(session.id, True)]

