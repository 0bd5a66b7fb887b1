"""The agent run: plan, execute steps, stop for a human before sensitive tools, answer.

LLM and tool work happens here, in the run's own task, never inside state-machine
callbacks; the machine only records where the session is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from statemachines import State, Trigger

from aura.agent_tasks import AgentTaskReporter
from aura.errors import LeaseLost, PlannerError, ToolError
from aura.events import EventType
from aura.hitl_store import HitlStore
from aura.ids import new_request_id
from aura.planner import Plan, Planner, PlanStep, StepOutcome
from aura.session import Session, SessionRegistry
from aura.signal_hub import SignalHub
from aura.signals import Decision, Signal
from aura.tools import Tool, ToolContext, ToolRegistry, validate_params

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS: Final = 1000  # keeps every frame a few KB (CONTRACT §3.6 point 2)
MAX_RESULT_CHARS: Final = 2000


class ErrorKind:
    """``errorType`` and ``code`` of the `error` events (docs/EVENTS.md)."""

    REJECTED = ("RejectionError", "E2001")
    TIMEOUT = ("TimeoutError", "E5001")
    TOOL = ("ToolError", "E5000")
    PLANNER = ("PlannerError", "E5000")
    CANCELLED = ("CancelledError", "E1000")
    INTERNAL = ("InternalError", "E1000")


class AgentRunner:
    def __init__(
        self,
        *,
        planner: Planner,
        tools: ToolRegistry,
        store: HitlStore,
        hub: SignalHub,
        registry: SessionRegistry,
        tool_context_redis: Redis,
        hitl_timeout_seconds: float,
        tool_timeout_seconds: float,
        redis_timeout_seconds: float,
        http: httpx.AsyncClient | None = None,
        gateway_url: str = "http://localhost:8080",
        task_reporter: AgentTaskReporter | None = None,
    ) -> None:
        self._planner = planner
        self._tools = tools
        self._store = store
        self._hub = hub
        self._registry = registry
        self._redis = tool_context_redis
        self._hitl_timeout = hitl_timeout_seconds
        self._tool_timeout = tool_timeout_seconds
        self._redis_timeout = redis_timeout_seconds
        self._http = http
        self._gateway_url = gateway_url
        self._tasks = task_reporter

    async def run(self, session: Session) -> None:
        """Drive ``session`` from wherever its snapshot says it is, to a final state."""
        if self._tasks is not None and session.seq == 0:
            self._tasks.track(session)
        try:
            if session.cancel_requested:
                raise asyncio.CancelledError
            await self._run(session)
        except asyncio.CancelledError:
            if session.detached:
                return  # another instance continues it: touch nothing
            await self._abort(session, Trigger.CANCEL, ErrorKind.CANCELLED, "The session was cancelled")
            if not session.cancel_requested:
                raise
        except LeaseLost:
            session.detached = True
            log.warning("session %s: lease lost; another instance drives it now", session.id)
        except PlannerError as exc:
            await self._abort(session, Trigger.FAIL, ErrorKind.PLANNER, f"The planner failed: {exc}")
        except Exception as exc:
            log.exception("session %s failed", session.id)
            await self._abort(session, Trigger.FAIL, ErrorKind.INTERNAL, _describe(exc))
        finally:
            await self._end(session)

    async def _end(self, session: Session) -> None:
        if not session.detached and session.model.is_final:
            try:
                await session.close()
            except (LeaseLost, RedisError, OSError, TimeoutError) as exc:
                log.warning("session %s: could not mark its log ended: %s", session.id, exc)
        self._registry.drop(session)

    # -- the steps ------------------------------------------------------------------
    async def _run(self, session: Session) -> None:
        if session.plan is None or session.state is State.PLANNING:
            # Planning again if a previous driver died before the plan was fully out.
            await self._make_plan(session)
        plan = session.plan
        assert plan is not None
        if session.tool_started is not None:
            await self._interrupted(session, plan)
            return
        while session.step_index < len(plan.steps):
            step = plan.steps[session.step_index]
            waiting = session.state is State.AWAITING_APPROVAL  # adopted while waiting: keep waiting
            if not waiting:
                session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "executing"})
            result: str | None = None
            if step.tool is not None:
                done, result = await self._run_tool_step(session, step, resume_wait=waiting)
                if not done:
                    return
            session.record_outcome(step.id, result)
            session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "completed"})
        await self._answer(session, plan)
        await self._fire(session, Trigger.FINISH)

    async def _make_plan(self, session: Session) -> None:
        request = session.request
        session.emit(EventType.THOUGHT, _thought("Analyzing the request...", "analysis"))
        plan = await self._planner.plan(request.prompt, request.context)
        session.set_plan(plan)
        for piece in _pieces(plan.thought):
            session.emit(EventType.THOUGHT, _thought(piece, "planning"))
        for order, step in enumerate(plan.steps):
            session.emit(EventType.PLAN_STEP, _plan_step(step, order))
        await self._fire(session, Trigger.START_EXECUTION)

    async def _interrupted(self, session: Session, plan: Plan) -> None:
        """A tool was running when the previous driver died: it is not run again (at most once)."""
        step = next(s for s in plan.steps if s.id == session.tool_started)
        message = "interrupted: the process running this tool stopped; it was not retried, to avoid running it twice"
        session.tool_started = None
        session.emit(
            EventType.TOOL_EXECUTION,
            {"tool": step.tool, "params": step.params, "stepId": step.id, "status": "failed", "error": message},
        )
        session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "failed"})
        await self._abort(session, Trigger.FAIL, ErrorKind.TOOL, f"{step.tool} {message}")

    async def _run_tool_step(self, session: Session, step: PlanStep, *, resume_wait: bool) -> tuple[bool, str | None]:
        assert step.tool is not None
        tool = self._tools.get(step.tool)
        # Checked before any approval is asked: a human never approves an impossible call.
        problem = step.invalid or (f"unknown tool: {step.tool}" if tool is None else None)
        if problem is None and tool is not None:
            problem = validate_params(tool, step.params)
        if problem is not None or tool is None:
            message = problem or f"unknown tool: {step.tool}"
            session.emit(
                EventType.TOOL_EXECUTION,
                {"tool": step.tool, "params": step.params, "stepId": step.id, "status": "failed", "error": message},
            )
            session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "failed"})
            await self._abort(session, Trigger.FAIL, ErrorKind.TOOL, f"{step.tool or 'tool'} cannot run: {message}")
            return False, None
        if tool.requires_approval:
            if not await self._approved(session, step, tool, resume_wait=resume_wait):
                return False, None
            session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "approved"})
        ok, text = await self._execute(session, step, tool)
        if not ok:
            session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "failed"})
            await self._abort(session, Trigger.FAIL, ErrorKind.TOOL, f"{tool.name} failed: {text}")
            return False, None
        return True, text

    async def _execute(self, session: Session, step: PlanStep, tool: Tool) -> tuple[bool, str]:
        base = {"tool": tool.name, "params": step.params, "stepId": step.id}
        session.tool_started = step.id
        # Persisted before the tool runs: a successor never runs it a second time.
        session.emit(EventType.TOOL_EXECUTION, {**base, "status": "executing"})
        await session.sync()
        ctx = ToolContext(
            session.owner.tenant_id,
            session.owner.user_id,
            session.id,
            self._redis,
            authorization=session.request.authorization,
            agent_id=session.request.agent_id,
            http=self._http,
            gateway_url=self._gateway_url,
        )
        try:
            async with asyncio.timeout(self._tool_timeout):
                result = await tool.run(step.params, ctx)
        except ToolError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"timed out after {self._tool_timeout:g} s"
        except Exception as exc:  # a broken tool must not take the session's error handling with it
            log.exception("tool %s crashed in session %s", tool.name, session.id)
            error = _describe(exc)
        else:
            session.tool_started = None
            session.emit(EventType.TOOL_EXECUTION, {**base, "status": "completed", "result": _clip(result)})
            return True, result
        session.tool_started = None
        session.emit(EventType.TOOL_EXECUTION, {**base, "status": "failed", "error": _clip(error)})
        return False, error

    async def _answer(self, session: Session, plan: Plan) -> None:
        outcomes = [StepOutcome(step, session.outcomes.get(step.id)) for step in plan.steps]
        skip = session.answered_chars  # what a previous driver already sent (deterministic planners)
        async for chunk in self._planner.answer(session.request.prompt, plan, outcomes):
            for piece in _pieces(chunk):
                if skip >= len(piece):
                    skip -= len(piece)
                    continue
                piece, skip = piece[skip:], 0
                session.answered_chars += len(piece)
                session.emit(EventType.CONTENT, {"content": piece, "format": "markdown"})

    # -- HITL (CONTRACT §4.1) -----------------------------------------------------------
    async def _approved(self, session: Session, step: PlanStep, tool: Tool, *, resume_wait: bool) -> bool:
        if resume_wait and session.model.pending_request_id is not None:
            request_id = session.model.pending_request_id
            waiter = self._hub.register(session.id, request_id)
        else:
            request_id = new_request_id()
            waiter = self._hub.register(session.id, request_id)  # before the key exists: no approval is missed
        try:
            if not resume_wait:
                await self._request_approval(session, step, tool, request_id)
            # Waiting may take minutes and thousands of sessions wait at once: keep no frames meanwhile.
            await session.sync()
            session.forget_frames()
            try:
                # Needed only if the subscription lapsed since the waiter registered (or it resumes).
                if resume_wait or not self._hub.listened_throughout(waiter):
                    await self._hub.recheck([waiter])
            except (RedisError, TimeoutError) as exc:  # the hub's sweep retries
                log.warning("re-check of %s failed: %s", request_id, exc)
            remaining = (session.approval_deadline or time.time()) - time.time()
            signal = await self._wait(waiter.decision, request_id, max(remaining, 0.0))
        finally:
            self._hub.unregister(waiter)
        if signal is None or signal.decision is Decision.REJECTED:
            # Before the abort, so that `error` is the last event before [DONE] (CONTRACT §3.8).
            session.emit(EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": "skipped"})
        if signal is None:
            await self._abort(
                session,
                Trigger.TIME_OUT,
                ErrorKind.TIMEOUT,
                f"No decision on {request_id} within {self._hitl_timeout:g} s; the request was withdrawn",
            )
            return False
        if signal.decision is Decision.REJECTED:
            reason = signal.reason or "User rejected"
            await self._abort(
                session, Trigger.REJECT, ErrorKind.REJECTED, f"{tool.name} was rejected: {reason}", request_id=request_id
            )
            return False
        await self._fire(session, Trigger.APPROVE, request_id=request_id)
        return True

    async def _request_approval(self, session: Session, step: PlanStep, tool: Tool, request_id: str) -> None:
        record = {
            "requestId": request_id,
            "sessionId": session.id,
            "userId": session.owner.user_id,
            "tenantId": session.owner.tenant_id,
            "actionType": tool.name,
            "context": step.params,
            "status": "pending",
            "createdAt": int(time.time() * 1000),
        }
        async with asyncio.timeout(self._redis_timeout):
            await self._store.create_request(record)
        session.model.begin_approval(request_id)
        session.approval_deadline = time.time() + self._hitl_timeout
        await self._fire(session, Trigger.REQUEST_APPROVAL)
        message = f"Approve {tool.name}? {step.description}"
        hitl = {
            "requestId": request_id,
            "sessionId": session.id,
            "actionType": tool.name,
            "action": tool.name,
            "message": message,
            "params": step.params,
            "context": step.params,
            "requiresApproval": True,
            "confidence": step.confidence,
            "editableContent": message,
            "stepId": step.id,
            "timeoutSeconds": self._hitl_timeout,
        }
        session.emit(EventType.HITL, hitl)
        session.emit(EventType.HITL_REQUEST, {"id": request_id, **hitl})

    async def _wait(self, decision: asyncio.Future[Signal], request_id: str, timeout: float) -> Signal | None:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(decision)
        except TimeoutError:
            pass
        # Withdraw atomically; a human who decided in the meantime still wins.
        async with asyncio.timeout(self._redis_timeout):
            return await self._store.withdraw(request_id, "timeout")

    # -- state changes ------------------------------------------------------------------
    async def _fire(self, session: Session, trigger: Trigger, *, request_id: str | None = None) -> None:
        moved = await session.model.fire(trigger, request_id=request_id)
        # transitions' AsyncMachine swallows CancelledError inside triggers: re-raise it.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        if not moved:
            raise RuntimeError(f"session {session.id}: {trigger.value} refused in state {session.state.value}")
        session.flush_transitions()

    async def _abort(
        self,
        session: Session,
        trigger: Trigger,
        kind: tuple[str, str],
        message: str,
        *,
        request_id: str | None = None,
    ) -> None:
        pending = session.model.pending_request_id
        if trigger is Trigger.CANCEL and pending is not None:
            await self._withdraw_quietly(pending, "cancelled")
        if not await session.model.fire(trigger, request_id=request_id, detail=message):
            return  # already final: one error per session
        error_type, code = kind
        reason = session.model.abort_reason
        try:
            session.flush_transitions()
            session.emit(
                EventType.ERROR,
                {
                    "message": message,
                    "error": message,
                    "errorType": error_type,
                    "code": code,
                    "sessionId": session.id,
                    "reason": reason.value if reason else None,
                },
            )
            await session.sync()
        except LeaseLost:
            session.detached = True
        except (RedisError, OSError, TimeoutError) as exc:
            # The log cannot take the abort; the lease will lapse and the session be adopted again.
            session.detached = True
            log.warning("session %s: could not record its abort: %s", session.id, exc)

    async def _withdraw_quietly(self, request_id: str, reason: str) -> None:
        try:
            async with asyncio.timeout(self._redis_timeout):
                await self._store.withdraw(request_id, reason)
        except (RedisError, TimeoutError, OSError) as exc:
            log.warning("could not withdraw %s: %s", request_id, exc)


def _thought(content: str, kind: str) -> dict[str, Any]:
    return {"content": content, "thoughtType": kind, "timestamp": int(time.time())}


def _plan_step(step: PlanStep, order: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": step.id,
        "title": step.title,
        "description": step.description,
        "order": order,
        "status": "pending",
        "confidence": step.confidence,
        "canSkip": False,
    }
    if step.tool is not None:
        data["tool"] = step.tool
    return data


def _pieces(text: str) -> list[str]:
    """Long text as several events, so no frame outgrows a network buffer (CONTRACT §3.6 point 2)."""
    return [text[start : start + MAX_CONTENT_CHARS] for start in range(0, len(text), MAX_CONTENT_CHARS)]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (RedisError, OSError)):
        return f"Redis is unavailable ({type(exc).__name__}: {exc})"
    if isinstance(exc, TimeoutError):
        return "Redis did not answer in time"
    return f"Internal error ({type(exc).__name__})"
