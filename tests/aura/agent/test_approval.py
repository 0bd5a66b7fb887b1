"""The approval gate, in memory: no decision is lost, deadlines survive adoption, Redis is re-read
exactly when Pub/Sub may have missed something, and the waiter never outlives its wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from statemachines import State

from aura.agent.approval import Verdict
from aura.errors import LeaseLost, StoreUnavailable
from aura.hitl.signals import Decision
from aura.ids import new_request_id
from aura.session.plan import Plan
from aura.session.session import Session
from tests.support.agent import Harness, bounded, kinds, state_moves, tool_step, until

pytestmark = pytest.mark.anyio

STEP = tool_step("send", {"to": "kim@example.com"})
PLAN = Plan(thought="Sending needs approval.", steps=[STEP])


@pytest.fixture
async def parts() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.aclose()


def executing(parts: Harness) -> Session:
    """A session at its tool step, about to ask."""
    return parts.adopt(PLAN, state=State.EXECUTING, seq=0)


async def waiting(parts: Harness, session: Session) -> str:
    """Wait until the gate waits (request stored, frames forgotten); the request's id."""
    await until(lambda: parts.hub.waiting == 1 and bool(parts.approvals.requests)
                and parts.replay.after(session.id, 0) is None)
    return parts.approval(session)


def decide(parts: Harness, session: Session, *, resume: bool = False) -> asyncio.Task[Verdict]:
    return asyncio.create_task(parts.gate.decide(session, STEP, "send", resume=resume))


async def adopted_waiting(parts: Harness, *, deadline_in: float) -> tuple[Session, str]:
    """A session adopted while it waited on a pending request whose deadline is ``deadline_in`` s away."""
    request_id = new_request_id()
    session = parts.adopt(PLAN, state=State.AWAITING_APPROVAL, seq=4, pending_request_id=request_id,
                          approval_deadline=time.time() + deadline_in)
    await parts.approvals.create_request({"requestId": request_id, "sessionId": session.id, "status": "pending"})
    return session, request_id


# -- a fresh request ------------------------------------------------------------------------------
async def test_an_approval_arriving_before_the_hitl_event_is_read_is_not_lost(parts: Harness) -> None:
    parts.subscribe()
    session = executing(parts)
    delivered: list[bool] = []
    logged_at_delivery: list[str] = []

    def approve_at_once(record: dict[str, Any]) -> None:
        logged_at_delivery.extend(kinds(parts.logged(session)))
        signal = parts.approvals.decide(record["sessionId"], record["requestId"], Decision.APPROVED)  # record first
        delivered.append(parts.hub.deliver(record["sessionId"], signal.to_json()))

    parts.approvals.on_create = approve_at_once

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))

    assert delivered == [True] and logged_at_delivery == []  # nobody had seen the `hitl` event yet
    assert verdict.approved and verdict.request_id == parts.approval(session)
    assert parts.approvals.rechecks == 1  # the message woke it; the record it read decided (issue 10)
    assert session.state is State.EXECUTING and session.pending_request_id is None
    await parts.writer.sync(session)
    events = parts.logged(session)
    assert kinds(events) == ["state", "hitl", "hitl_request", "state"]
    assert state_moves(events) == [("executing", "awaiting_approval"), ("awaiting_approval", "executing")]
    hitl = events[1][1]
    assert (hitl["requestId"], hitl["sessionId"], hitl["actionType"], hitl["stepId"], hitl["timeoutSeconds"]) == (
        verdict.request_id, session.id, "send", "step-1", 30.0)
    assert events[2][1]["id"] == verdict.request_id
    record = parts.approvals.requests[verdict.request_id]
    assert (record["sessionId"], record["actionType"], record["context"]) == (
        session.id, "send", {"to": "kim@example.com"})
    assert parts.hub.waiting == 0


async def test_a_rejection_gives_a_verdict_that_is_not_approved_with_its_reason(parts: Harness) -> None:
    parts.subscribe()
    session = executing(parts)
    task = decide(parts, session)
    request_id = await waiting(parts, session)

    assert parts.deliver(session, request_id, Decision.REJECTED, "not to that address")
    verdict = await bounded(task)

    assert not verdict.approved and verdict.request_id == request_id
    assert verdict.signal is not None and verdict.signal.decision is Decision.REJECTED
    assert verdict.signal.reason == "not to that address"
    assert parts.approvals.withdrawn == {}
    assert session.state is State.AWAITING_APPROVAL  # the run fires `reject`
    assert parts.hub.waiting == 0


async def test_no_decision_in_time_withdraws_the_request_and_gives_no_signal(parts: Harness) -> None:
    parts.subscribe()
    parts.gate.timeout_seconds = 0.05
    session = executing(parts)

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))

    assert verdict.signal is None and not verdict.approved
    assert parts.approvals.withdrawn == {verdict.request_id: "timeout"}
    assert parts.approvals.requests[verdict.request_id]["status"] == "rejected"  # a late approval gets 409
    assert session.state is State.AWAITING_APPROVAL  # the run fires `time_out`
    assert parts.hub.waiting == 0


async def test_a_decision_that_beat_the_timeouts_withdraw_is_returned(parts: Harness) -> None:
    parts.subscribe()
    parts.gate.timeout_seconds = 0.05
    session = executing(parts)
    # Decided in Redis, its Pub/Sub message not (yet) delivered.

    def decided_in_redis(record: dict[str, Any]) -> None:
        parts.approvals.decide(record["sessionId"], record["requestId"], Decision.APPROVED)

    parts.approvals.on_create = decided_in_redis

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))

    assert verdict.approved
    assert parts.approvals.rechecks == 0  # found by the withdraw, not a re-read
    assert parts.approvals.withdrawn == {}
    assert parts.approvals.requests[verdict.request_id]["status"] == "approved"
    assert session.state is State.EXECUTING and session.pending_request_id is None


# -- a resumed wait ---------------------------------------------------------------------------------
async def test_a_resumed_wait_keeps_the_original_deadline_and_asks_no_new_request(parts: Harness) -> None:
    parts.subscribe()
    assert parts.gate.timeout_seconds == 30
    session, request_id = await adopted_waiting(parts, deadline_in=0.2)
    started = time.monotonic()

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=True), timeout=5)

    assert 0.1 <= time.monotonic() - started < 5  # the deadline it had, not a fresh 30 s
    assert verdict.signal is None and verdict.request_id == request_id
    assert list(parts.approvals.requests) == [request_id]
    assert parts.approvals.withdrawn == {request_id: "timeout"}
    assert session.id not in parts.store.frames  # no second `hitl`, no state event
    assert parts.hub.waiting == 0


async def test_a_resumed_wait_past_its_deadline_times_out_at_once(parts: Harness) -> None:
    parts.subscribe()
    session, request_id = await adopted_waiting(parts, deadline_in=-60)

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=True), timeout=2)

    assert verdict.signal is None and parts.approvals.withdrawn == {request_id: "timeout"}


async def test_a_resumed_wait_always_rereads_redis_even_when_the_hub_listened_throughout(parts: Harness) -> None:
    parts.subscribe()
    session, request_id = await adopted_waiting(parts, deadline_in=30)
    parts.approvals.decide(session.id, request_id, Decision.APPROVED)  # decided while nobody drove it

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=True), timeout=5)

    assert parts.approvals.rechecks == 1
    assert verdict.approved and verdict.request_id == request_id
    assert list(parts.approvals.requests) == [request_id] and parts.approvals.withdrawn == {}
    assert session.state is State.EXECUTING and session.pending_request_id is None
    assert parts.hub.waiting == 0


async def test_a_resumed_wait_takes_a_decision_delivered_while_it_waits(parts: Harness) -> None:
    parts.subscribe()
    session, request_id = await adopted_waiting(parts, deadline_in=30)
    task = decide(parts, session, resume=True)
    await until(lambda: parts.hub.waiting == 1 and parts.approvals.rechecks == 1)

    assert parts.deliver(session, request_id, Decision.APPROVED)
    verdict = await bounded(task)

    assert verdict.approved and session.state is State.EXECUTING


# -- when Redis is re-read on a fresh wait ----------------------------------------------------------------
def resubscribe(parts: Harness) -> None:
    parts.hub.generation += 1


def lose_subscription(parts: Harness) -> None:
    parts.hub.subscribed.clear()
    parts.hub.generation += 1


@pytest.mark.parametrize(
    ("subscribed", "meanwhile", "rechecks"),
    [
        pytest.param(True, None, 0, id="listened-throughout"),
        pytest.param(False, None, 1, id="never-subscribed"),
        pytest.param(True, resubscribe, 1, id="resubscribed-after-registering"),
        pytest.param(True, lose_subscription, 1, id="subscription-lost-after-registering"),
    ],
)
async def test_a_fresh_wait_rereads_redis_only_when_the_subscription_lapsed_since_it_registered(
    parts: Harness, subscribed: bool, meanwhile: Callable[[Harness], None] | None, rechecks: int
) -> None:
    if subscribed:
        parts.subscribe()
    parts.gate.timeout_seconds = 0.1
    session = executing(parts)

    def decided_in_redis(record: dict[str, Any]) -> None:
        if meanwhile is not None:
            meanwhile(parts)  # between the waiter's registration and the re-check
        parts.approvals.decide(record["sessionId"], record["requestId"], Decision.APPROVED)

    parts.approvals.on_create = decided_in_redis

    verdict = await bounded(parts.gate.decide(session, STEP, "send", resume=False))

    assert parts.approvals.rechecks == rechecks
    assert verdict.approved  # re-read at once, or else returned by the timeout's withdraw
    assert parts.hub.waiting == 0


# -- what the wait leaves behind ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["approved", "rejected", "timeout", "cancelled", "store-failure", "lease-lost"])
async def test_the_waiter_is_unregistered_after_every_wait(parts: Harness, path: str) -> None:
    parts.subscribe()
    if path == "timeout":
        parts.gate.timeout_seconds = 0.05
    if path == "store-failure":
        parts.approvals.fail_create = RedisConnectionError("redis went away")
    session = executing(parts)
    if path == "lease-lost":
        parts.store.lost.add(session.id)
    task = decide(parts, session)

    if path in ("approved", "rejected", "cancelled"):
        request_id = await waiting(parts, session)
        if path == "cancelled":
            task.cancel()
        else:
            decision = Decision.APPROVED if path == "approved" else Decision.REJECTED
            assert parts.deliver(session, request_id, decision)
    outcome = await bounded(asyncio.gather(task, return_exceptions=True))

    expected: dict[str, type[BaseException] | None] = {
        "cancelled": asyncio.CancelledError, "store-failure": StoreUnavailable, "lease-lost": LeaseLost,
    }
    failure = expected.get(path)
    if failure is None:
        assert isinstance(outcome[0], Verdict)
    else:
        assert isinstance(outcome[0], failure)
    assert parts.hub.waiting == 0


async def test_a_waiting_session_keeps_no_frames_in_the_replay_cache(parts: Harness) -> None:
    parts.subscribe()
    session = executing(parts)
    task = decide(parts, session)
    request_id = await waiting(parts, session)

    last = max(parts.store.seqs(session.id))
    assert kinds(parts.logged(session)) == ["state", "hitl", "hitl_request"]
    assert parts.replay.after(session.id, 0) is None  # followers read the earlier frames from Redis
    assert parts.replay.after(session.id, last) == ([], False)

    assert parts.deliver(session, request_id, Decision.APPROVED)
    await bounded(task)
    await parts.writer.sync(session)
    frames, ended = parts.replay.after(session.id, last) or ([], True)
    assert [seq for seq, _ in frames] == [last + 1] and not ended  # the cache carries on after the wait



async def test_a_failed_recheck_does_not_fail_the_wait(parts: Harness) -> None:
    parts.approvals.fail_recheck = RedisConnectionError("redis went away")  # never subscribed: re-checks
    session = executing(parts)
    task = decide(parts, session)
    request_id = await waiting(parts, session)
    await until(lambda: parts.approvals.rechecks == 1)
    parts.approvals.fail_recheck = None  # Redis is back: the decision is read from the record (issue 10)

    assert parts.deliver(session, request_id, Decision.APPROVED)  # the hub's sweep or Pub/Sub, later
    verdict = await bounded(task)

    assert verdict.approved and parts.hub.waiting == 0
