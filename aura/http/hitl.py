"""The approval API with main-service's semantics (CONTRACT §4.4), so Aura also works standalone.

Behind the real gateway these paths go to main-service (CONTRACT §1.2); Aura
serves them for direct callers and demos without Java.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import authenticate_approver, tenant_header
from aura.envelope import success_response
from aura.errors import InternalError, NotFound, TenantMismatch, ValidationFailed
from aura.hitl_store import DecisionResult, Outcome
from aura.http.body import parse_json_object, read_body
from aura.http.storage import bounded
from aura.runtime import Runtime
from aura.signals import Decision

_BODY_LIMIT = 64 * 1024
T = TypeVar("T")


async def approve(request: Request) -> Response:
    return await _decide(request, Decision.APPROVED)


async def reject(request: Request) -> Response:
    return await _decide(request, Decision.REJECTED)


async def _decide(request: Request, decision: Decision) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal, tenant = authenticate_approver(runtime.verifier, request.headers)
    body = parse_json_object(await read_body(request, _BODY_LIMIT))
    user_id = body.get("userId")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationFailed("userId must not be blank")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationFailed("reason must be a string")
    request_id = request.path_params["request_id"]
    result = await _store_call(
        runtime, runtime.store.decide(request_id, decision, actor=user_id, tenant=tenant, reason=reason)
    )
    return _decision_response(request_id, decision, result)


def _decision_response(request_id: str, decision: Decision, result: DecisionResult) -> Response:
    if result.outcome is Outcome.NOT_FOUND:
        raise NotFound(f"Approval request not found: {request_id}")
    if result.outcome is Outcome.TENANT_MISMATCH:
        raise TenantMismatch("Tenant mismatch")
    if result.outcome is Outcome.CORRUPT:
        raise InternalError("Stored approval request has no sessionId")
    record = result.record or {}
    data: dict[str, Any] = {"requestId": request_id, "sessionId": record.get("sessionId"), "status": result.status}
    if decision is Decision.REJECTED and record.get("reason") is not None:
        data["reason"] = record.get("reason")
    if result.outcome is Outcome.ALREADY_PROCESSED:
        return success_response(data, message="Request was already processed (idempotent)", status_code=409)
    message = "Request approved successfully" if decision is Decision.APPROVED else "Request rejected"
    return success_response(data, message=message)


async def get_request(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    tenant = tenant_header(request.headers)
    request_id = request.path_params["request_id"]
    raw = await _store_call(runtime, runtime.store.get_request(request_id))
    if raw is None or not _same_tenant(raw, tenant):
        raise NotFound(f"Approval request not found: {request_id}")
    return success_response(raw, message="Approval request retrieved")


async def get_signal(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    tenant = tenant_header(request.headers)
    session_id = request.path_params["session_id"]
    raw = await _store_call(runtime, runtime.store.get_signal(session_id))
    owner_request = await _store_call(runtime, runtime.store.session_request(session_id))
    if raw is not None and owner_request is not None and not _same_tenant(owner_request, tenant):
        raw = None  # another tenant's decision: say nothing about it
    if raw is None:
        return success_response(None, message="No signal found for session")
    return success_response(raw, message="Signal retrieved")


def _same_tenant(raw_record: str, tenant: str) -> bool:
    try:
        record = json.loads(raw_record)
    except ValueError:
        return True
    stored = record.get("tenantId") if isinstance(record, dict) else None
    return stored is None or str(stored) == tenant


async def _store_call(runtime: Runtime, call: Awaitable[T]) -> T:
    return await bounded(call, runtime.settings.redis_timeout_seconds)
