"""In-memory stand-ins for the stores, for unit tests that run without Redis.

They keep what the real stores promise (a commit is all or nothing per session,
fenced by the lease; a decision is read back as a Signal) and nothing more; the
real stores are tested against a real redis-server in their own modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aura.auth import Principal
from aura.errors import LeaseLost
from aura.hitl.signals import DEFAULT_REJECTION_REASON, Decision, Signal
from aura.session.store import Append


@dataclass
class MemoryLogStore:
    """A LogStore: each session's frames, snapshot fields and end marker, as Redis would hold them."""

    frames: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)  # sessions whose lease another instance holds
    failures: list[BaseException] = field(default_factory=list)  # raised by the next commits, in order
    commits: list[list[str]] = field(default_factory=list)  # the session ids of each commit
    refusals: dict[str, list[Exception]] = field(default_factory=dict)  # per session: answers of its next calls
    gate: asyncio.Event | None = None  # when set up, a commit waits for it (a slow Redis)

    async def commit(self, appends: Sequence[Append]) -> list[Exception | None]:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.commits.append([a.session_id for a in appends])
        answers: list[Exception | None] = []
        for append in appends:
            sid = append.session_id
            if sid in self.lost:
                answers.append(LeaseLost(sid))
                continue
            if self.refusals.get(sid):
                answers.append(self.refusals[sid].pop(0))  # Redis refused this one call: nothing written
                continue
            log = self.frames.setdefault(sid, [])
            stored = int(self.fields.get(sid, {}).get("seq", "0"))
            log.extend((seq, frame) for seq, frame in append.frames if seq > stored)
            self.fields.setdefault(sid, {}).update(append.fields)
            if append.end:
                self.ended.add(sid)
            answers.append(None)
        return answers

    def seqs(self, session_id: str) -> list[int]:
        return [seq for seq, _ in self.frames.get(session_id, [])]


@dataclass
class MemoryApprovals:
    """An ApprovalStore and DecisionSource: approval records and the decisions made on them.

    As in HitlStore, only a session's own record decides (issue 10): ``signals`` is what
    main-service also wrote to hitl:signal, and nothing reads it as a decision.
    """

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, Signal] = field(default_factory=dict)  # by session id, as hitl:signal:{sid}
    withdrawn: dict[str, str] = field(default_factory=dict)  # request id -> reason
    rechecks: int = 0

    async def create_request(self, record: dict[str, Any]) -> None:
        self.requests[record["requestId"]] = dict(record)

    async def withdraw(self, request_id: str, reason: str, *, session_id: str | None = None) -> Signal | None:
        record = self.requests.get(request_id)
        if record is None or (session_id is not None and record.get("sessionId") != session_id):
            return None
        if record["status"] in (Decision.APPROVED.value, Decision.REJECTED.value):
            return Signal(request_id, Decision(record["status"]), reason=record.get("reason"))
        record.update(status=Decision.REJECTED.value, reason=reason)
        self.withdrawn[request_id] = reason
        return None

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        self.rechecks += 1
        found: list[Signal | None] = []
        for session_id, request_id in pending:
            record = self.requests.get(request_id) or {}
            status = record.get("status") if record.get("sessionId") == session_id else None
            if status == Decision.APPROVED.value:
                found.append(Signal(request_id, Decision.APPROVED))
            elif status == Decision.REJECTED.value:
                found.append(Signal(request_id, Decision.REJECTED, reason=record.get("reason") or DEFAULT_REJECTION_REASON))
            else:
                found.append(None)
        return found

    def decide(self, session_id: str, request_id: str, decision: Decision, reason: str | None = None) -> Signal:
        """Record a decision the way main-service does (the record, then hitl:signal), without publishing it."""
        record = self.requests.get(request_id)
        assert record is not None, f"no request {request_id}: main-service would answer 404"
        record["status"] = decision.value
        if decision is Decision.REJECTED:
            record["reason"] = reason or DEFAULT_REJECTION_REASON
        signal = Signal(request_id, decision, reason=record.get("reason"))
        self.signals[session_id] = signal
        return signal


@dataclass
class CountingQuotas:
    """The registry's quotas in unit harnesses without Redis (whose store counts nothing): it records
    the sessions whose failed creation it was asked to uncount."""

    forgotten: list[str] = field(default_factory=list)

    async def forget(self, owner: Principal, session_id: str) -> None:
        self.forgotten.append(session_id)
