"""The approval gate: stop before a sensitive tool until a human decides (CONTRACT §4.1).

In this order, so that not even the fastest approval is lost: register the
waiter with the hub (which already listens) → write ``hitl:request`` →
``request_approval`` → emit ``hitl`` → re-check Redis if the subscription lapsed
since the waiter registered. A session adopted while waiting keeps its request
and the deadline it had, and always re-checks (the decision may have come while
nobody drove it).

Whatever wakes the wait (a message, the sweep, the timeout), the decision is the
one on the session's own ``hitl:request`` record (issue 10): a PUBLISH or a
``hitl:signal`` value without it runs no tool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from statemachines import Trigger

from aura.agent.machine import fire
from aura.errors import StoreUnavailable
from aura.hitl.hub import ApprovalWaiter, SignalHub
from aura.hitl.signals import Decision, Signal
from aura.ids import new_request_id
from aura.metrics import ApprovalOutcome, Metrics, unserved
from aura.session import events
from aura.session.log_writer import LogWriter
from aura.session.plan import PlanStep
from aura.session.session import Session
from aura.storage.calls import bounded
from aura.telemetry import tracing
from aura.telemetry.log_context import bound

log = logging.getLogger(__name__)


class ApprovalStore(Protocol):
    """The approval records (:class:`aura.hitl.store.HitlStore` in production)."""

    async def create_request(self, record: dict[str, Any]) -> None: ...

    async def withdraw(self, request_id: str, reason: str, *, session_id: str | None = None) -> Signal | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    request_id: str
    signal: Signal | None  # None: nobody decided in time, and the request was withdrawn

    @property
    def approved(self) -> bool:
        return self.signal is not None and self.signal.decision is Decision.APPROVED


class ApprovalGate:
    def __init__(
        self,
        hub: SignalHub,
        store: ApprovalStore,
        writer: LogWriter,
        *,
        timeout_seconds: float,
        redis_timeout_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._hub = hub
        self._store = store
        self._writer = writer
        self.timeout_seconds = timeout_seconds
        self._redis_timeout = redis_timeout_seconds

    async def decide(self, session: Session, step: PlanStep, tool: str, *, resume: bool) -> Verdict:
        """Ask (or, when ``resume``, keep waiting) and return the decision; `approve` is fired on approval."""
        resuming = resume and session.pending_request_id is not None
        request_id = session.pending_request_id if resuming and session.pending_request_id else new_request_id()
        attributes: dict[str, tracing.AttributeValue] = {"aura.hitl.request_id": request_id, "aura.tool.name": tool,
                                                         "aura.approval.resumed": resuming}
        with bound(request_id=request_id), tracing.span("aura.approval.wait", attributes) as wait:
            waiter = self._hub.register(session.id, request_id)  # before the key exists: no approval is missed
            try:
                if not resuming:
                    await self._ask(session, step, tool, request_id)
                log.info("session %s: waiting for a decision on %s (%s)", session.id, request_id, tool)
                # Waiting may take minutes and thousands of sessions wait at once: keep no frames meanwhile.
                await self._writer.sync(session)
                self._writer.idle(session)
                await self._recheck(waiter, always=resuming)
                signal = await self._wait(waiter, session.approval_time_left(time.time()))
            except asyncio.CancelledError:
                # A cancel of a session that had asked: an outcome. A drain's is not (another replica waits on).
                if session.cancel_requested and session.pending_request_id == request_id:
                    self._ended(session, ApprovalOutcome.CANCELLED)
                raise
            finally:
                self._hub.unregister(waiter)
            outcome = "timeout" if signal is None else signal.decision.value
            wait.set({"aura.approval.outcome": outcome})
            log.info("session %s: %s %s", session.id, request_id, "timed out" if signal is None else f"was {outcome}")
        verdict = Verdict(request_id, signal)
        if signal is None:
            self._ended(session, ApprovalOutcome.TIMEOUT)
        else:
            self._ended(session, ApprovalOutcome.APPROVED if verdict.approved else ApprovalOutcome.REJECTED)
        if verdict.approved:
            await fire(self._writer, session, Trigger.APPROVE, request_id=request_id)
        return verdict

    def _ended(self, session: Session, outcome: ApprovalOutcome) -> None:
        """Count the outcome, and the wait since the request was made (by whichever replica made it)."""
        deadline = session.approval_deadline
        waited = 0.0 if deadline is None else time.time() - (deadline - self.timeout_seconds)
        self._metrics.approval_ended(outcome, waited)

    async def withdraw(self, session_id: str, request_id: str, reason: str) -> None:
        """Mark ``session_id``'s pending request rejected (a cancel), so a late approval gets 409; only a
        record of that session is touched. Failures are logged."""
        try:
            await bounded(
                self._store.withdraw(request_id, reason, session_id=session_id), self._redis_timeout, "withdraw request"
            )
        except StoreUnavailable as exc:
            log.warning("could not withdraw %s: %s", request_id, exc)

    async def _ask(self, session: Session, step: PlanStep, tool: str, request_id: str) -> None:
        record = {
            "requestId": request_id,
            "sessionId": session.id,
            "userId": session.owner.user_id,
            "tenantId": session.owner.tenant_id,
            "actionType": tool,
            "context": step.params,
            "status": "pending",
            "createdAt": int(time.time() * 1000),
        }
        await bounded(self._store.create_request(record), self._redis_timeout, "create approval request")
        session.begin_approval(request_id, time.time() + self.timeout_seconds)
        await fire(self._writer, session, Trigger.REQUEST_APPROVAL)
        hitl = events.hitl(step, request_id=request_id, session_id=session.id, tool=tool,
                           timeout_seconds=self.timeout_seconds)
        self._writer.emit_all(session, hitl)

    async def _recheck(self, waiter: ApprovalWaiter, *, always: bool) -> None:
        """Read Redis for a decision Pub/Sub may have missed: always on resume, else if the subscription lapsed."""
        if not always and self._hub.listened_throughout(waiter):
            return
        try:
            await self._hub.recheck([waiter])
        except StoreUnavailable as exc:  # the hub's sweep retries
            log.warning("re-check of %s failed: %s", waiter.request_id, exc)

    async def _wait(self, waiter: ApprovalWaiter, timeout: float) -> Signal | None:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter.decision)
        except TimeoutError:
            pass
        # Withdraw atomically; a human who decided in the meantime still wins, on this session's record only.
        withdrawal = self._store.withdraw(waiter.request_id, "timeout", session_id=waiter.session_id)
        return await bounded(withdrawal, self._redis_timeout, "withdraw request")
