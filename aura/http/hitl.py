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

from aura.auth import Authenticator, tenant_header
from aura.http.envelope import success_response
from aura.errors import Forbidden, InternalError, NotFound, TenantMismatch, ValidationFailed
from aura.hitl.store import DecisionResult, HitlStore, Outcome
from aura.http.body import parse_json_object, read_body
from aura.storage.calls import bounded
from aura.hitl.signals import Decision

_BODY_LIMIT = 64 * 1024
T = TypeVar("T")


class HitlEndpoints:
    def __init__(self, authenticator: Authenticator, store: HitlStore, *, redis_timeout_seconds: float) -> None:
        self._authenticator = authenticator
        self._store = store
        self._timeout = redis_timeout_seconds

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, Decision.APPROVED)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, Decision.REJECTED)

    async def _decide(self, request: Request, decision: Decision) -> Response:
        principal, _ = self._authenticator.approver(request.headers)  # X-Tenant-ID checked to be a Long
        tenant = tenant_header(request.headers)
        body = parse_json_object(await read_body(request, _BODY_LIMIT))
        user_id = body.get("userId")
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValidationFailed("userId must not be blank")
        # main-service records the body's userId as the approver, whoever signed the token (CONTRACT
        # §4.4); Aura records the token's subject, and refuses a body that names somebody else.
        if user_id != principal.user_id:
            raise Forbidden("userId does not match the authenticated user")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValidationFailed("reason must be a string")
        request_id = request.path_params["request_id"]
        result = await self._call(
            self._store.decide(request_id, decision, actor=principal.user_id, tenant=tenant, reason=reason), "decide"
        )
        return _decision_response(request_id, decision, result)

    async def get_request(self, request: Request) -> Response:
        tenant = tenant_header(request.headers)
        request_id = request.path_params["request_id"]
        raw = await self._call(self._store.get_request(request_id), "read approval request")
        if raw is None or not _same_tenant(raw, tenant):
            raise NotFound(f"Approval request not found: {request_id}")
        return success_response(raw, message="Approval request retrieved")

    async def get_signal(self, request: Request) -> Response:
        tenant = tenant_header(request.headers)
        session_id = request.path_params["session_id"]
        raw = await self._call(self._store.get_signal(session_id), "read signal")
        owner_request = await self._call(self._store.session_request(session_id), "read approval request")
        if raw is not None and owner_request is not None and not _same_tenant(owner_request, tenant):
            raw = None  # another tenant's decision: say nothing about it
        if raw is None:
            return success_response(None, message="No signal found for session")
        return success_response(raw, message="Signal retrieved")

    async def _call(self, call: Awaitable[T], operation: str) -> T:
        return await bounded(call, self._timeout, operation)


def _decision_response(request_id: str, decision: Decision, result: DecisionResult) -> Response:
    if result.outcome is Outcome.NOT_FOUND:
        raise NotFound(f"Approval request not found: {request_id}")
    if result.outcome is Outcome.TENANT_MISMATCH:
        raise TenantMismatch("Tenant mismatch")
    if result.outcome is Outcome.CORRUPT:
        raise InternalError("Stored approval request has no sessionId")
    if result.outcome is Outcome.MALFORMED:
        raise ValidationFailed("Stored approval request is malformed: its status is not a string")
    record = result.record or {}
    data: dict[str, Any] = {"requestId": request_id, "sessionId": record.get("sessionId"), "status": result.status}
    if decision is Decision.REJECTED and record.get("reason") is not None:
        data["reason"] = record.get("reason")
    if result.outcome is Outcome.ALREADY_PROCESSED:
        return success_response(data, message="Request was already processed (idempotent)", status_code=409)
    message = "Request approved successfully" if decision is Decision.APPROVED else "Request rejected"
    return success_response(data, message=message)


def _same_tenant(raw_record: str, tenant: str) -> bool:
    try:
        record = json.loads(raw_record)
    except ValueError:
        return True
    stored = record.get("tenantId") if isinstance(record, dict) else None
    return stored is None or str(stored) == tenant
