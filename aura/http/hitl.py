"""The approval API with main-service's semantics (CONTRACT §4.4), so Aura also works standalone.

Behind the real gateway these paths go to main-service (CONTRACT §1.2); Aura
serves them for direct callers and demos without Java. Its reads are stricter than
main-service's, which checks nothing on them (CONTRACT §4.4): they authenticate as
approve/reject do, and show a record only to its own tenant (issue 10).
"""

from __future__ import annotations

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
        """``GET /aura/hitl/requests/{id}``: the record as stored (CONTRACT §4.4), to its tenant only.

        Any authenticated user of the record's tenant may read it, as any may decide it (DECISIONS
        41); another tenant's record is the same 404 as an unknown one.
        """
        self._authenticator.approver(request.headers)  # before any read: 401/403 say nothing of the id
        tenant = tenant_header(request.headers)
        request_id = request.path_params["request_id"]
        raw = await self._call(self._store.request_for(request_id, tenant), "read approval request")
        if raw is None:
            raise NotFound(f"Approval request not found: {request_id}")
        return success_response(raw, message="Approval request retrieved")

    async def get_signal(self, request: Request) -> Response:
        """``GET /aura/hitl/signals/{sid}`` (CONTRACT §4.3), to the tenant of the session's request only.

        A session whose tenant cannot be told (no request record) answers as one without a signal.
        """
        self._authenticator.approver(request.headers)
        tenant = tenant_header(request.headers)
        session_id = request.path_params["session_id"]
        raw = await self._call(self._store.signal_for(session_id, tenant), "read signal")
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

