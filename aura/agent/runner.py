"""The agent run: plan, execute steps, stop for a human before sensitive tools, answer.

LLM and tool work happens here, in the run's own task, never inside state-machine
callbacks; the machine only records where the session is. The run starts from
wherever the session's snapshot says it is, so an adopted session continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import Final

import httpx
from redis.asyncio import Redis

from statemachines import State, Trigger

from aura import errors
from aura.agent.approval import ApprovalGate
from aura.agent.machine import fire
from aura.agent.planner import Planner
from aura.agent.tools import Tool, ToolContext, ToolRegistry, validate_params
from aura.auth import Delegator
from aura.config import DEFAULT_GATEWAY_URL
from aura.errors import LeaseLost, NotReplicated, PlannerError, SessionErrorKind, StoreUnavailable, ToolError
from aura.hitl.signals import Decision
from aura.metrics import Metrics, ToolOutcome, unserved
from aura.session import events, results
from aura.session.endings import Ending, explain
from aura.session.language import Language, language_of
from aura.session.log_writer import LogWriter
from aura.session.plan import Plan, PlanStep, StepOutcome
from aura.session.results import ToolCall
from aura.session.registry import SessionRegistry
from aura.session.replication import ReplicaAcks
from aura.session.session import Session
from aura.telemetry import log_context, tracing

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running this tool stopped; it was not retried, to avoid running it twice"


@dataclass(frozen=True, slots=True)
class ToolEnvironment:
    """What tools run with: the Redis of the built-ins, the outbound HTTP client, the gateway, a bound,
    and what mints the user's token of each DWP call (None: calls carry no user token)."""

    redis: Redis
    http: httpx.AsyncClient | None = None
    gateway_url: str = DEFAULT_GATEWAY_URL
    timeout_seconds: float = 30.0
    delegator: Delegator | None = None

    def context(self, session: Session) -> ToolContext:
        grant = session.request.delegation
        return ToolContext(
            session.owner.tenant_id,
            session.owner.user_id,
            session.id,
            self.redis,
            # minted per call, not here: a call made after a long approval wait gets a fresh token
            credentials=(functools.partial(self.delegator.authorization, grant, session.owner)
                         if self.delegator is not None and grant is not None else None),
            agent_id=session.request.agent_id,
            http=self.http,
            gateway_url=self.gateway_url,
        )


@dataclass(frozen=True, slots=True)
class Abort:
    """Why a run stops short of its answer: the `error` event's kind and message, and what the
    explanatory `content` before it says."""

    trigger: Trigger
    kind: SessionErrorKind
    message: str
    ending: Ending
    tool: str | None = None
    detail: str = ""
    seconds: float = 0.0
    failed: ToolCall | None = None  # the call that failed, for the result's checklist
    request_id: str | None = None


class AgentRunner:
    def __init__(
        self,
        planner: Planner,
        tools: ToolRegistry,
        gate: ApprovalGate,
        writer: LogWriter,
        registry: SessionRegistry,
        environment: ToolEnvironment,
        replicas: ReplicaAcks | None = None,
        *,
        workspace_events: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._planner = planner
        self._tools = tools
        self._gate = gate
        self._writer = writer
        self._registry = registry
        self._environment = environment
        self._replicas = replicas  # None: no replica must acknowledge (embedded, or a lone Redis)
        # `thought_chain` and `action_execution` beside the documented events (docs/EVENTS.md)
        self._workspace_events = workspace_events

    async def run(self, session: Session) -> None:
        """Drive ``session`` from wherever its snapshot says it is, to a final state: in its span, with
        the session's ids on every line it logs (the run's task has a context of its own). One frame
        for it all: a waiting session holds this coroutine, and no wrapper around it."""
        adopted = session.resumed_at_seq > 0
        with log_context.bound(session_id=session.id, tenant_id=session.owner.tenant_id), tracing.session_run(
            session.id, session.owner.tenant_id, session.request.trace_context, adopted=adopted
        ) as span:
            log.info("session %s: run %s in state %s", session.id, "resumed" if adopted else "started",
                     session.state.value)
            try:
                if session.cancel_requested:
                    raise asyncio.CancelledError
                await self._run(session)
            except asyncio.CancelledError:
                if session.detached:
                    return  # another instance continues it: touch nothing
                running = self._close_running_tool(session, "cancelled while running")
                await self._abort(session, Abort(
                    Trigger.CANCEL, errors.CANCELLED, "The session was cancelled",
                    Ending.CANCELLED if running is None else Ending.CANCELLED_WHILE_RUNNING,
                    tool=running.step.tool if running else None,
                    failed=running or _waiting_call(session, _CANCELLED_CALL[_language(session)])))
                if not session.cancel_requested:
                    raise
            except LeaseLost:
                session.detach()
                log.warning("session %s: lease lost; another instance drives it now", session.id)
            except PlannerError as exc:
                await self._abort(session, Abort(Trigger.FAIL, errors.PLANNER_FAILED, f"The planner failed: {exc}",
                                                 Ending.PLANNER_FAILED, detail=str(exc)))
            except Exception as exc:
                log.exception("session %s failed", session.id)
                message = describe(exc)
                await self._abort(session, Abort(Trigger.FAIL, errors.INTERNAL, message, Ending.INTERNAL, detail=message))
            finally:
                try:
                    await self._end(session)
                finally:
                    reason = session.model.abort_reason
                    span.set({"aura.session.state": session.state.value,
                              "aura.session.abort_reason": reason.value if reason else None})
                    log.info("session %s: run %s", session.id, _ending(session))

    async def _end(self, session: Session) -> None:
        try:
            if not session.detached and session.model.is_final:
                await self._writer.close(session)
                self._metrics.session_ended(session.state, session.model.abort_reason)
        except LeaseLost as exc:
            log.warning("session %s: could not mark its log ended: %s", session.id, exc)
        except StoreUnavailable as exc:
            # Its last events are not in Redis: it goes on from its snapshot once Redis is back.
            session.strand()
            log.warning("session %s: could not mark its log ended: %s; it resumes when Redis is back", session.id, exc)
        finally:  # even when a cancel lands here: a session that ended leaves memory
            self._registry.drop(session)

    def _emit(self, session: Session, item: events.EventData) -> None:
        self._writer.emit(session, *item)

    def _thought(self, session: Session, text: str, kind: str) -> None:
        self._emit(session, events.thought(text, kind))
        if self._workspace_events:
            self._emit(session, events.thought_chain(text, kind))

    def _tool_ended(self, session: Session, step: PlanStep, *, result: str | None = None,
                    error: str | None = None) -> None:
        """A call's end: `tool_execution` completed/failed and, for the AI-workspace page, its one card."""
        status = "failed" if error is not None else "completed"
        self._emit(session, events.tool_execution(step, status, result=result, error=error))
        if self._workspace_events:
            self._emit(session, events.action_execution(step, status, result=result, error=error))

    def _close_running_tool(self, session: Session, message: str) -> ToolCall | None:
        """A run that ends while its tool runs reports the tool failed: every executing gets an end."""
        step = session.running_step()
        if step is None:
            return None
        session.end_tool()
        try:
            self._tool_ended(session, step, error=message)
            self._emit(session, events.step_status(step, "failed"))
        except (LeaseLost, StoreUnavailable):
            pass  # the abort that follows meets the same error and says so
        return ToolCall(step, message, completed=False)

    # -- the steps ------------------------------------------------------------------
    async def _run(self, session: Session) -> None:
        if session.plan is None or session.state is State.PLANNING:
            # Planning again if a previous driver died before the plan was fully out.
            await self._make_plan(session)
        plan = session.plan
        assert plan is not None
        if session.tool_started is not None:
            running = session.running_step()
            if running is None:
                raise RuntimeError(f"session {session.id}: its running tool's step {session.tool_started} is not in its plan")
            await self._interrupted(session, running)
            return
        while session.step_index < len(plan.steps):
            step = plan.steps[session.step_index]
            waiting = session.state is State.AWAITING_APPROVAL  # adopted while waiting: keep waiting
            if not waiting:
                self._emit(session, events.step_status(step, "executing"))
            result: str | None = None
            if step.tool is not None:
                done, result = await self._run_tool_step(session, step, resume_wait=waiting)
                if not done:
                    return
            session.record_outcome(step.id, result)
            self._emit(session, events.step_status(step, "completed"))
        await self._answer(session, plan)
        await fire(self._writer, session, Trigger.FINISH)

    async def _make_plan(self, session: Session) -> None:
        request = session.request
        self._thought(session, "Analyzing the request...", "analysis")
        with tracing.span("aura.planner.plan"):
            plan = await self._planner.plan(request.prompt, request.context)
        session.set_plan(plan)
        for piece in events.pieces(plan.thought):
            self._thought(session, piece, "planning")
        for order, step in enumerate(plan.steps):
            self._emit(session, events.plan_step(step, order))
        if self._workspace_events and plan.steps:
            # The AI-workspace page has no `plan_step` branch: the plan is one of its thoughts there.
            self._emit(session, events.thought_chain(_plan_text(plan, _language(session)), "planning"))
        await fire(self._writer, session, Trigger.START_EXECUTION)

    async def _interrupted(self, session: Session, step: PlanStep) -> None:
        """A tool was running when the previous driver died: it is not run again (at most once)."""
        session.end_tool()
        self._tool_ended(session, step, error=INTERRUPTED)
        self._emit(session, events.step_status(step, "failed"))
        await self._abort(session, Abort(Trigger.FAIL, errors.TOOL_FAILED, f"{step.tool} {INTERRUPTED}",
                                         Ending.INTERRUPTED, tool=step.tool,
                                         failed=ToolCall(step, INTERRUPTED, completed=False)))

    async def _run_tool_step(self, session: Session, step: PlanStep, *, resume_wait: bool) -> tuple[bool, str | None]:
        assert step.tool is not None
        tool = self._tools.get(step.tool)
        # Checked before any approval is asked: a human never approves an impossible call.
        problem = step.invalid or (f"unknown tool: {step.tool}" if tool is None else None)
        if problem is None and tool is not None:
            problem = validate_params(tool, step.params)
        if problem is not None or tool is None:
            message = problem or f"unknown tool: {step.tool}"
            self._tool_ended(session, step, error=message)
            self._emit(session, events.step_status(step, "failed"))
            await self._abort(session, Abort(Trigger.FAIL, errors.TOOL_FAILED, f"{step.tool or 'tool'} cannot run: {message}",
                                             Ending.INVALID_CALL, tool=step.tool, detail=message,
                                             failed=ToolCall(step, message, completed=False)))
            return False, None
        if tool.requires_approval:
            if not await self._approved(session, step, tool, resume_wait=resume_wait):
                return False, None
            self._emit(session, events.step_status(step, "approved"))
        ok, text = await self._execute(session, step, tool)
        if not ok:
            self._emit(session, events.step_status(step, "failed"))
            await self._abort(session, Abort(Trigger.FAIL, errors.TOOL_FAILED, f"{tool.name} failed: {text}",
                                             Ending.TOOL_FAILED, tool=tool.name, detail=text,
                                             failed=ToolCall(step, text, completed=False)))
            return False, None
        return True, text

    async def _approved(self, session: Session, step: PlanStep, tool: Tool, *, resume_wait: bool) -> bool:
        verdict = await self._gate.decide(session, step, tool.name, resume=resume_wait)
        if verdict.approved:
            return True
        # Before the abort, so that `error` is the last event before [DONE] (CONTRACT §3.8).
        self._emit(session, events.step_status(step, "skipped"))
        signal = verdict.signal
        if signal is None:
            seconds = self._gate.timeout_seconds
            message = f"No decision on {verdict.request_id} within {seconds:g} s; the request was withdrawn"
            await self._abort(session, Abort(Trigger.TIME_OUT, errors.APPROVAL_TIMEOUT, message, Ending.TIMED_OUT,
                                             tool=tool.name, seconds=seconds,
                                             failed=ToolCall(step, _NO_APPROVAL[_language(session)],
                                                             completed=False, ran=False)))
        elif signal.decision is Decision.REJECTED:
            reason = signal.reason or "User rejected"
            await self._abort(session, Abort(Trigger.REJECT, errors.REJECTED, f"{tool.name} was rejected: {reason}",
                                             Ending.REJECTED, tool=tool.name, detail=reason,
                                             failed=ToolCall(step, _REJECTED[_language(session)],
                                                             completed=False, ran=False),
                                             request_id=verdict.request_id))
        return False

    async def _execute(self, session: Session, step: PlanStep, tool: Tool) -> tuple[bool, str]:
        session.begin_tool(step)
        # Persisted before the tool runs: a successor never runs it a second time.
        self._emit(session, events.tool_execution(step, "executing"))
        await self._writer.sync(session)
        if tool.requires_approval and self._replicas is not None:
            # A side effect: `executing` must survive a failover of the primary too, or it could run twice.
            try:
                await self._replicas.confirm(session.id)
            except StoreUnavailable as exc:
                session.end_tool()
                error = f"not run: {exc.cause if isinstance(exc.cause, NotReplicated) else exc.message}"
                self._tool_ended(session, step, error=error)
                return False, error
        timeout = self._environment.timeout_seconds
        bound = asyncio.timeout(timeout)
        outcome = ToolOutcome.CANCELLED  # unless the call ends by itself
        started = time.perf_counter()
        try:
            with tracing.span("aura.tool.call", {"aura.tool.name": tool.name, "aura.step.id": step.id}):
                async with bound:
                    result = await tool.run(step.params, self._environment.context(session))
            outcome = ToolOutcome.COMPLETED
        except ToolError as exc:
            outcome, error = ToolOutcome.FAILED, exc.message
        except StoreUnavailable as exc:  # a built-in tool's Redis
            outcome, error = ToolOutcome.FAILED, f"{tool.name} failed: {exc.message}"
        except TimeoutError as exc:
            if not bound.expired():  # the tool's own timeout, not ours
                log.exception("tool %s crashed in session %s", tool.name, session.id, exc_info=exc)
            outcome = ToolOutcome.TIMEOUT if bound.expired() else ToolOutcome.CRASHED
            error = f"timed out after {timeout:g} s" if bound.expired() else f"{tool.name} crashed (TimeoutError)"
        except Exception as exc:  # a broken tool must not take the session's error handling with it
            log.exception("tool %s crashed in session %s", tool.name, session.id)
            outcome = ToolOutcome.CRASHED
            error = f"{tool.name} crashed ({type(exc).__name__})"  # never its text: it may hold secrets
        else:
            session.end_tool()
            self._tool_ended(session, step, result=result)
            return True, result
        finally:
            self._metrics.tool_called(tool.name, outcome, time.perf_counter() - started)
        session.end_tool()
        self._tool_ended(session, step, error=error)
        return False, error

    async def _answer(self, session: Session, plan: Plan) -> None:
        outcomes = [StepOutcome(step, session.outcomes.get(step.id)) for step in plan.steps]
        skip = session.answered_chars  # what a previous driver already sent (deterministic planners)
        held: str | None = None  # one piece behind: the last one carries the result
        sent = skip > 0
        try:
            with tracing.span("aura.planner.answer"):
                async for chunk in self._planner.answer(session.request.prompt, plan, outcomes):
                    for piece in events.pieces(chunk):
                        if skip >= len(piece):
                            skip -= len(piece)
                            continue
                        piece, skip = piece[skip:], 0
                        if held is not None:
                            self._send_answer(session, held)
                        held = piece
        except BaseException:
            # The answer broke off (the model failed, a cancel): what it said so far still goes out.
            if held is not None and not session.detached:
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    self._send_answer(session, held)
            raise
        language = _language(session)
        result = results.result(results.tool_calls(plan.steps, session.outcomes), language)
        if held is None and result is not None and not sent:
            held = _DONE[language]  # an empty answer still carries the result
        if held is not None:
            self._send_answer(session, held, result)

    def _send_answer(self, session: Session, piece: str, result: events.Payload | None = None) -> None:
        session.answered(len(piece))
        self._emit(session, events.content(piece, result))

    # -- the end --------------------------------------------------------------------------
    async def _abort(self, session: Session, abort: Abort) -> None:
        pending = session.pending_request_id
        if abort.trigger is Trigger.CANCEL and pending is not None:
            await self._gate.withdraw(session.id, pending, "cancelled")
        if not await session.model.fire(abort.trigger, request_id=abort.request_id, detail=abort.message):
            return  # already final: one error per session
        reason = session.model.abort_reason
        try:
            self._writer.emit_all(session, session.take_transition_events())
            self._explain(session, abort)
            self._emit(session, events.error(abort.kind, abort.message, session_id=session.id,
                                             reason=reason.value if reason else None))
            await self._writer.sync(session)
        except LeaseLost:
            session.detach()
        except StoreUnavailable as exc:
            # The log cannot take the abort: the session goes on from its snapshot once Redis is back.
            session.strand()
            log.warning("session %s: could not record its abort: %s; it resumes when Redis is back", session.id, exc)

    def _explain(self, session: Session, abort: Abort) -> None:
        """The explanatory `content` before `error` (CONTRACT §3.8), in the prompt's language, with
        the result of the tools that ran, if any did."""
        language = _language(session)
        text = explain(abort.ending, language, tool=abort.tool, detail=abort.detail, seconds=abort.seconds)
        if session.answered_chars:
            text = "\n\n" + text  # after part of an answer: a paragraph of its own, not glued to it
        steps = session.plan.steps if session.plan is not None else ()
        result = results.result(results.tool_calls(steps, session.outcomes, abort.failed), language)
        pieces = events.pieces(text)
        for piece in pieces[:-1]:
            self._emit(session, events.content(piece))
        self._emit(session, events.content(pieces[-1], result))


_DONE: Final = {Language.ENGLISH: "Done.", Language.KOREAN: "완료했습니다."}
_REJECTED: Final = {Language.ENGLISH: "rejected", Language.KOREAN: "승인 거부"}
_NO_APPROVAL: Final = {Language.ENGLISH: "no approval in time", Language.KOREAN: "승인 시간 초과"}
_CANCELLED_CALL: Final = {Language.ENGLISH: "cancelled", Language.KOREAN: "취소됨"}
_PLAN_HEADING: Final = {Language.ENGLISH: "Plan:", Language.KOREAN: "실행 계획:"}


def _language(session: Session) -> Language:
    return language_of(session.request.prompt, session.request.context)


def _plan_text(plan: Plan, language: Language) -> str:
    """The plan as one thought: one `thought_chain`, so clipped to one piece."""
    lines = [_PLAN_HEADING[language]]
    lines += [f"{number}. {step.title}" for number, step in enumerate(plan.steps, 1)]
    text = "\n".join(lines)
    return events.fit(text, events.MAX_CONTENT_CHARS)


def _waiting_call(session: Session, why: str) -> ToolCall | None:
    """The call a session was waiting to have approved, if it was: not run."""
    if session.pending_request_id is None or session.plan is None or session.step_index >= len(session.plan.steps):
        return None
    return ToolCall(session.plan.steps[session.step_index], why, completed=False, ran=False)


def _ending(session: Session) -> str:
    if session.stranded:
        return f"stopped in state {session.state.value}: Redis is away; it resumes from its snapshot"
    if session.detached:
        return f"stopped in state {session.state.value}: another instance continues it"
    reason = session.model.abort_reason
    return f"ended {session.state.value}" + (f" ({reason.value})" if reason else "")


def describe(exc: BaseException) -> str:
    """What a user is told about an unexpected failure: the kind, never a traceback."""
    if isinstance(exc, StoreUnavailable):
        if isinstance(exc.cause, TimeoutError):
            return "Redis did not answer in time"
        return f"Redis is unavailable ({type(exc.cause).__name__}: {exc.cause})"
    return f"Internal error ({type(exc).__name__})"
