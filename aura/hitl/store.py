"""The HITL records in the shared Redis, in main-service's format (CONTRACT §4.2-4.4).

Aura creates ``hitl:request:{id}`` itself (no Java endpoint does, CONTRACT §4.1) and,
for standalone use, applies decisions with main-service's semantics. A decision is a
compare-and-set of the one record key (a script: the record is replaced only if it
is still what was read), so two concurrent approvals give one 200 and one 409, where
main-service's check-then-set may give two 200s.

The contract fixes these keys' names, so on a Redis Cluster they sit in different
slots. Every write is therefore a single-key step, in an order that stays correct
if the process dies between two of them: the record first (what a decision is
judged by, and what the sweep reads), then its companions, then the publish.

Only the record decides (issue 10): a message on ``hitl:channel:{sid}`` or a value in
``hitl:signal:{sid}`` is a claim anyone who can reach Redis can make, while main-service
writes the record before either (CONTRACT §4.1 step 6). A waiting session therefore
resumes or aborts on what :meth:`HitlStore.decisions_for` reads in its record, alone.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import WatchError  # a Redis error: mapped to StoreUnavailable like the rest

from aura.storage import keys
from aura.storage.scripts import Script
from aura.hitl.signals import DEFAULT_REJECTION_REASON, Decision, Signal

log = logging.getLogger(__name__)

REQUEST_TTL_SECONDS: Final = 1800
SESSION_TTL_SECONDS: Final = 3600
SIGNAL_TTL_SECONDS: Final = 300
_TERMINAL: Final = frozenset({Decision.APPROVED.value, Decision.REJECTED.value})
_MAX_RACES: Final = 50
_REPORTED_LIMIT: Final = 4096  # corrupt records logged already: a sweep reads them every round
T = TypeVar("T")

# Replace KEYS[1] by ARGV[2] only if it still holds ARGV[1]; ARGV[3] is its TTL ('' keeps the TTL).
_REPLACE_IF_UNCHANGED_LUA: Final = """
-- No "already holds the new value: done" shortcut, unlike the lease's: two approvals by one user in
-- the same millisecond write the same record, and both would be told they decided (two 200s).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""
_REPLACE_IF_UNCHANGED: Final = Script(_REPLACE_IF_UNCHANGED_LUA)


@dataclass(frozen=True, slots=True)
class _Write:
    """What a decision writes: the record (with its TTL, or None to keep it), then the signal, if any."""

    record: dict[str, Any]
    ttl: int | None
    signal: tuple[str, str] | None = None  # (sessionId, signal JSON): stored, then published


class Outcome(str, enum.Enum):
    APPLIED = "applied"
    ALREADY_PROCESSED = "already_processed"  # 409
    NOT_FOUND = "not_found"  # 404 E1004
    TENANT_MISMATCH = "tenant_mismatch"  # 403 E2007
    CORRUPT = "corrupt"  # stored JSON unusable (main-service: NPE → 500)
    MALFORMED = "malformed"  # a field of the wrong JSON type: answered 400, never a TypeError's 500


@dataclass(frozen=True, slots=True)
class DecisionResult:
    outcome: Outcome
    record: dict[str, Any] | None = None

    @property
    def status(self) -> str | None:
        return None if self.record is None else _text(self.record.get("status"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Unreadable(Exception):
    """A stored value that is not UTF-8 text: no record, and nothing a compare-and-set can quote back."""


def _utf8(value: bytes | str | None) -> str | None:
    """A value read with NEVER_DECODE, as text; raises _Unreadable for bytes that are not UTF-8.

    The clients decode replies themselves, and one value that is not UTF-8 makes redis-py raise for
    the whole pipeline: a poisoned record would have stopped the sweep for every waiting session.
    """
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable(str(exc)) from None


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _load(raw: str | None) -> dict[str, Any] | None:
    """The stored record; ``{}`` when it cannot be one (not JSON, nested too deep, not an object)."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _status(record: dict[str, Any]) -> str | None:
    """The record's status if it is text (a list there once made every `in _TERMINAL` raise TypeError)."""
    status = record.get("status")
    return status if isinstance(status, str) else None


class HitlStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reported: set[str] = set()

    async def create_request(self, record: dict[str, Any]) -> None:
        """SET hitl:request (30 min), then hitl:session (60 min, bare requestId as Java writes it).

        The record first: it is all an approval needs, and main-service never reads
        hitl:session (CONTRACT §4.2). Dying between the two leaves a request that can
        be decided, and a pointer that is missing, never one that points at nothing.
        """
        request_id = record["requestId"]
        await self._redis.set(keys.hitl_request(request_id), _dump(record), ex=REQUEST_TTL_SECONDS)
        await self._redis.set(keys.hitl_session(record["sessionId"]), request_id, ex=SESSION_TTL_SECONDS)

    async def request_for(self, request_id: str, tenant: str) -> str | None:
        """The stored record's JSON text, if it exists and is ``tenant``'s; else None.

        The tenant is compared as :meth:`decide` compares it (exactly, failing closed: DECISIONS 40),
        so what a caller may decide and what it may read are the same records. A record that is not a
        JSON object has no tenant, and is nobody's.
        """
        text = await self._text(keys.hitl_request(request_id))
        record = _load(text)
        return text if record and _same_tenant(record.get("tenantId"), tenant) else None

    async def signal_for(self, session_id: str, tenant: str) -> str | None:
        """``hitl:signal:{sid}`` as stored, if the session's approval request is ``tenant``'s; else None.

        The signal names no tenant (CONTRACT §4.3): the session's is the one on the record that
        ``hitl:session:{sid}`` points at, and a session whose record is gone has none to show.
        """
        request_id = await self._text(keys.hitl_session(session_id))
        if request_id is None:
            return None
        record = _load(await self._text(keys.hitl_request(request_id)))
        if not record or record.get("sessionId") != session_id or not _same_tenant(record.get("tenantId"), tenant):
            return None
        return await self._text(keys.hitl_signal(session_id))

    async def _text(self, key: str) -> str | None:
        """GET ``key`` as text; a value that is not UTF-8 reads as absent instead of raising."""
        try:
            return _utf8(await _get_undecoded(self._redis, key))
        except _Unreadable:
            return None

    async def decisions_for(self, pending: list[tuple[str, str]]) -> list[Signal | None]:
        """For each ``(sessionId, requestId)``: the decision its ``hitl:request`` record holds, if any.

        Only the record is read, never ``hitl:signal`` (issue 10): main-service writes the record
        before the signal and the PUBLISH, so a signal without it is nobody's decision. A record
        that is gone, pending, another session's or corrupt gives None, and the session keeps
        waiting (its timeout ends it). Each entry is judged on its own, so one poisoned record
        leaves the others' decisions found. One round trip whatever the count.
        """
        if not pending:
            return []
        # Single-key GETs in one pipeline: a cluster client splits them by slot, where an MGET fails.
        # Undecoded, so a value that is not UTF-8 spoils its own entry and not the whole reply.
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, request_id in pending:
                pipe.execute_command("GET", keys.hitl_request(request_id), **{NEVER_DECODE: []})
            values: list[Any] = await pipe.execute()
        return [
            self._decision_on_record(session_id, request_id, value)
            for (session_id, request_id), value in zip(pending, values, strict=True)
        ]

    def _decision_on_record(self, session_id: str, request_id: str, value: bytes | str | None) -> Signal | None:
        decision, problem = _read_decision(session_id, request_id, value)
        if problem is not None and request_id not in self._reported:  # logged once: a sweep reads it every round
            if len(self._reported) >= _REPORTED_LIMIT:
                self._reported.clear()
            self._reported.add(request_id)
            log.warning("ignoring hitl:request:%s: %s; the session keeps waiting", request_id, problem)
        return decision

    async def decide(
        self, request_id: str, decision: Decision, *, actor: str, tenant: str, reason: str | None = None
    ) -> DecisionResult:
        """Approve or reject as main-service's HitlManager does, then publish the signal.

        Stricter on the tenant (fail closed, docs/DECISIONS.md): the stored ``tenantId`` must be
        exactly the approver's ``X-Tenant-ID`` text, where main-service compares numbers and skips
        the check for a tenant it cannot parse (CONTRACT §4.2).
        """

        def plan(record: dict[str, Any] | None) -> tuple[DecisionResult, _Write | None]:
            if record is None:
                return DecisionResult(Outcome.NOT_FOUND), None
            if not _same_tenant(record.get("tenantId"), tenant):
                return DecisionResult(Outcome.TENANT_MISMATCH, record), None
            if record.get("status") is not None and _status(record) is None:  # null is approvable (§4.2)
                return DecisionResult(Outcome.MALFORMED, record), None
            if _status(record) in _TERMINAL:
                return DecisionResult(Outcome.ALREADY_PROCESSED, record), None
            session_id = record.get("sessionId")
            if not isinstance(session_id, str) or not session_id:
                return DecisionResult(Outcome.CORRUPT, record), None
            now_ms = _now_ms()
            record["status"] = decision.value
            if decision is Decision.APPROVED:
                record.update(approvedBy=actor, approvedAt=now_ms)
            else:
                record.update(rejectedBy=actor, rejectedAt=now_ms, reason=reason or DEFAULT_REJECTION_REASON)
            signal_json = Signal(request_id, decision, reason=record.get("reason"), timestamp=now_ms // 1000).to_json()
            return DecisionResult(Outcome.APPLIED, record), _Write(record, REQUEST_TTL_SECONDS, (session_id, signal_json))

        return await self._compare_and_set(keys.hitl_request(request_id), plan)

    async def withdraw(self, request_id: str, reason: str, *, session_id: str | None = None) -> Signal | None:
        """Mark a still-pending request rejected with ``reason`` so a late approval gets 409.

        Returns the decision a human already made if one beat us to it (it must
        not be lost), else ``None``. A vanished key is left vanished: a late
        approval then gets 404. Given ``session_id``, a record of another session
        is neither read as a decision nor written (as in :meth:`decisions_for`).
        """

        def plan(record: dict[str, Any] | None) -> tuple[Signal | None, _Write | None]:
            if record is None:
                return None, None
            if session_id is not None and record.get("sessionId") != session_id:
                return None, None
            status = _status(record)
            if status in _TERMINAL:
                return Signal(request_id, Decision(status), reason=_text(record.get("reason"))), None
            record.update(status=Decision.REJECTED.value, reason=reason, rejectedBy="aura", rejectedAt=_now_ms())
            return None, _Write(record, None)

        return await self._compare_and_set(keys.hitl_request(request_id), plan)

    async def _compare_and_set(
        self, key: str, plan: Callable[[dict[str, Any] | None], tuple[T, _Write | None]]
    ) -> T:
        """Read ``key``, let ``plan`` decide, and replace it only if unchanged; retry on a race.

        The signal is stored and published only after the record says the decision:
        a process that dies between leaves a decided record, which the waiting
        session's sweep reads (a decision is never published that the record lacks).
        """
        for _ in range(_MAX_RACES):
            try:
                raw = _utf8(await _get_undecoded(self._redis, key))
            except _Unreadable:
                # Not text: judged as a record without fields, and left as it is (the script compares text).
                return plan({})[0]
            result, write = plan(_load(raw))
            if write is None:
                return result
            assert raw is not None  # a plan writes only over a record it read
            ttl = "" if write.ttl is None else str(write.ttl)
            if not await _REPLACE_IF_UNCHANGED.run(self._redis, [key], [raw, _dump(write.record), ttl]):
                continue  # another decision came between the read and the write
            if write.signal is not None:
                session_id, signal_json = write.signal
                await self._redis.set(keys.hitl_signal(session_id), signal_json, ex=SIGNAL_TTL_SECONDS)
                await self._redis.publish(keys.hitl_channel(session_id), signal_json)
            return result
        raise WatchError(f"{key} kept changing during {_MAX_RACES} attempts")


def _read_decision(session_id: str, request_id: str, value: bytes | str | None) -> tuple[Signal | None, str | None]:
    """What a stored record says of the waiting session's request, and what is wrong with it if it is corrupt.

    Approved or rejected (with the record's reason, main-service's default if none) decide; pending, a
    missing status or one main-service does not treat as final (§4.2) leave the session waiting, and so
    does a corrupt record, which never approves.
    """
    if value is None:
        return None, None  # gone, or not written yet (a waiter registers before its record exists)
    try:
        record = json.loads(_utf8(value) or "")
    except (_Unreadable, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        return None, f"not JSON text ({type(exc).__name__})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    if record.get("sessionId") != session_id:
        return None, f"it is not the record of session {session_id}"
    status = record.get("status")
    if status is not None and not isinstance(status, str):
        return None, f"its status is a JSON {type(status).__name__}, not a string"
    if status == Decision.APPROVED.value:
        return Signal(request_id, Decision.APPROVED), None
    if status == Decision.REJECTED.value:
        reason = _text(record.get("reason")) or DEFAULT_REJECTION_REASON
        return Signal(request_id, Decision.REJECTED, reason=reason), None
    return None, None


async def _get_undecoded(redis: Redis, key: str) -> bytes | str | None:
    """GET ``key`` as the bytes Redis holds, whatever the client's decode_responses."""
    execute: Callable[..., Awaitable[Any]] = redis.execute_command  # unannotated in redis-py
    value: bytes | str | None = await execute("GET", key, **{NEVER_DECODE: []})
    return value


def _same_tenant(stored: Any, tenant: str) -> bool:
    """``tenantId`` as Aura writes it (the caller's X-Tenant-ID text) or as a JSON number (Java's test
    fixtures); missing, another type, ``"01"`` for ``1`` or ``"+7"`` for ``7``: not the same tenant."""
    if isinstance(stored, bool):
        return False
    if isinstance(stored, int):
        return str(stored) == tenant
    return isinstance(stored, str) and stored == tenant
