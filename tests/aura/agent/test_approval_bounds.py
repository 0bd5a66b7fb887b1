"""The approval gate's record for main-service, its bounds on a Redis that hangs or fails, and what it
re-reads. In memory (tests/support/agent.py); written against the survivors of ``make mutate``
(docs/TESTING.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from statemachines import State

from aura.agent.approval import ApprovalGate
from aura.errors import StoreUnavailable
from aura.hitl.signals import Decision, Signal
from aura.ids import new_request_id
from aura.session.plan import Plan
from aura.session.session import Session
from tests.support.agent import Harness, HookedApprovals, bounded, tool_step, until

pytestmark = pytest.mark.anyio

STEP = tool_step("send", {"to": "kim@example.com"})
PLAN = Plan(thought="Sending needs approval.", steps=[STEP])
REDIS_TIMEOUT = 0.05


@dataclass
class SlowApprovals(HookedApprovals):
    """HookedApprovals that can hang (a Redis that stopped answering) and records every re-read."""

    hang_create: bool = False
    hang_withdraw: bool = False
    fail_withdraw: BaseException | None = None
    asked: list[list[tuple[str, str]]] = field(default_factory=list)

    async def create_request(self, record: dict[str, Any]) -> None:
        if self.hang_create:
            await asyncio.Event().wait()
        await super().create_request(record)

    async def withdraw(self, request_id: str, reason: str, *, session_id: str | None = None) -> Signal | None:
        if self.hang_withdraw:
            await asyncio.Event().wait()
        if self.fail_withdraw is not None:
            raise self.fail_withdraw
        return await super().withdraw(request_id, reason, session_id=session_id)

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.asked.append(list(pending))
        return await super().decisions_for(pending)


@pytest.fixture
async def parts() -> AsyncIterator[Harness]:
    harness = Harness(approvals=SlowApprovals())
    harness.gate = ApprovalGate(harness.hub, harness.approvals, harness.writer, timeout_seconds=30,
                                redis_timeout_seconds=REDIS_TIMEOUT)
    yield harness
    await harness.aclose()


def approvals(parts: Harness) -> SlowApprovals:
    assert isinstance(parts.approvals, SlowApprovals)
    return parts.approvals


def executing(parts: Harness) -> Session:
    return parts.adopt(PLAN, state=State.EXECUTING, seq=0)


# -- the record main-service reads ----------------------------------------------------------------------
async def test_the_request_record_names_the_owner_and_the_creation_time_in_milliseconds(parts: Harness) -> None:
    parts.subscribe()
    session = executing(parts)
    created: list[dict[str, Any]] = []

    def approve_at_once(record: dict[str, Any]) -> None:
        created.append(dict(record))
        signal = parts.approvals.decide(record["sessionId"], record["requestId"], Decision.APPROVED)  # record first
        parts.hub.deliver(record["sessionId"], signal.to_json())

    parts.approvals.on_create = approve_at_once
    before = int(time.time() * 1000)
    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))
    after = int(time.time() * 1000)

    [record] = created
    assert verdict.approved
    assert record["requestId"] == verdict.request_id
    assert (record["userId"], record["tenantId"], record["status"]) == (session.owner.user_id,
                                                                        session.owner.tenant_id, "pending")
    assert before <= record["createdAt"] <= after
    assert isinstance(record["createdAt"], int)


async def test_a_fresh_ask_makes_a_new_request_even_if_the_session_still_names_an_old_one(parts: Harness) -> None:
    parts.subscribe()
    session = executing(parts)
    session.begin_approval("req_old", time.time() + 30)  # left over; `resume` is what decides

    def approve_at_once(record: dict[str, Any]) -> None:
        signal = parts.approvals.decide(record["sessionId"], record["requestId"], Decision.APPROVED)  # record first
        parts.hub.deliver(record["sessionId"], signal.to_json())

    parts.approvals.on_create = approve_at_once

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))

    assert verdict.approved and verdict.request_id != "req_old"
    assert list(parts.approvals.requests) == [verdict.request_id]


# -- a Redis that hangs or fails ------------------------------------------------------------------------
async def test_a_hung_create_request_fails_the_ask_after_the_redis_timeout(parts: Harness) -> None:
    approvals(parts).hang_create = True
    session = executing(parts)
    with pytest.raises(StoreUnavailable) as caught:
        await bounded(parts.gate.decide(session, STEP, "send", resume=False))
    assert caught.value.operation == "create approval request"
    assert isinstance(caught.value.cause, TimeoutError)
    assert parts.hub.waiting == 0


async def test_a_refused_create_request_names_the_operation(parts: Harness) -> None:
    parts.approvals.fail_create = RedisConnectionError("refused")
    session = executing(parts)
    with pytest.raises(StoreUnavailable) as caught:
        await bounded(parts.gate.decide(session, STEP, "send", resume=False))
    assert caught.value.operation == "create approval request"
    assert session.state is State.EXECUTING  # it never asked


async def test_a_hung_withdraw_at_the_deadline_fails_the_wait_after_the_redis_timeout(parts: Harness) -> None:
    parts.subscribe()
    parts.gate.timeout_seconds = 0.01
    approvals(parts).hang_withdraw = True
    session = executing(parts)
    with pytest.raises(StoreUnavailable) as caught:
        await bounded(parts.gate.decide(session, STEP, "send", resume=False))
    assert caught.value.operation == "withdraw request"
    assert isinstance(caught.value.cause, TimeoutError)


async def test_a_cancels_withdraw_gives_up_after_the_redis_timeout_without_raising(parts: Harness) -> None:
    approvals(parts).hang_withdraw = True
    await bounded(parts.gate.withdraw("sess_x", new_request_id(), "cancelled"), 1.0)


async def test_a_cancels_withdraw_that_redis_refuses_is_only_logged(parts: Harness) -> None:
    approvals(parts).fail_withdraw = RedisConnectionError("refused")
    await bounded(parts.gate.withdraw("sess_x", new_request_id(), "cancelled"), 1.0)


async def test_a_cancels_withdraw_marks_the_request_rejected_with_the_reason(parts: Harness) -> None:
    request_id = new_request_id()
    await parts.approvals.create_request({"requestId": request_id, "sessionId": "sess_x", "status": "pending"})
    await bounded(parts.gate.withdraw("sess_x", request_id, "cancelled"))
    assert parts.approvals.withdrawn == {request_id: "cancelled"}


async def test_a_cancels_withdraw_leaves_another_sessions_request_alone(parts: Harness) -> None:
    request_id = new_request_id()
    await parts.approvals.create_request({"requestId": request_id, "sessionId": "sess_other", "status": "pending"})
    await bounded(parts.gate.withdraw("sess_x", request_id, "cancelled"))
    assert parts.approvals.requests[request_id]["status"] == "pending"
    assert parts.approvals.withdrawn == {}


# -- what a resumed wait re-reads --------------------------------------------------------------------------
async def test_a_resumed_wait_rereads_only_its_own_request(parts: Harness) -> None:
    parts.subscribe()
    other = parts.hub.register("sess_other", "req_other")  # another session of this process, waiting too
    request_id = new_request_id()
    session = parts.adopt(PLAN, state=State.AWAITING_APPROVAL, seq=4, pending_request_id=request_id,
                          approval_deadline=time.time() + 30)
    await parts.approvals.create_request({"requestId": request_id, "sessionId": session.id, "status": "pending"})
    parts.approvals.decide(session.id, request_id, Decision.APPROVED)

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=True))

    assert verdict.approved and verdict.request_id == request_id
    assert approvals(parts).asked == [[(session.id, request_id)]]
    assert not other.decision.done()
    await until(lambda: parts.hub.waiting == 1)  # only the other session's waiter is left
