"""Aura's one exception hierarchy.

    AuraError
    ├── ConfigError            bad environment; raised at start-up, never at request time
    ├── ApiError               answered as an ApiResponse error envelope (CONTRACT §2.6-2.7)
    │   ├── BadRequest         400 E1001 (also: non-numeric X-Tenant-ID on approve/reject)
    │   ├── ValidationFailed   400 E4000 / E4001 / E4002
    │   ├── PayloadTooLarge    413 E4000
    │   ├── TenantMissing      400 E2006
    │   ├── Unauthorized       401 E2000
    │   ├── TokenExpired       401 E2002
    │   ├── TokenInvalid       401 E2003
    │   ├── Forbidden          403 E2001
    │   ├── TenantMismatch     403 E2007
    │   ├── NotFound           404 E1004
    │   ├── MethodNotAllowed   405 E1002
    │   ├── StoreUnavailable   503 E5000 (Redis did not answer in time)
    │   └── InternalError      500 E1000
    ├── MalformedSignal        a HITL signal that is not the JSON of CONTRACT §4.3
    ├── PlannerError           the planner (e.g. the LLM) failed or answered garbage; the session aborts
    ├── LeaseLost              another instance now drives the session; this one stops touching it
    └── ToolError              a tool failed; its message becomes tool_execution.error
"""

from __future__ import annotations


class AuraError(Exception):
    """Base of every error Aura raises on purpose."""


class ConfigError(AuraError):
    """The environment does not describe a valid configuration."""


class ApiError(AuraError):
    status_code: int = 500
    error_code: str = "E1000"
    default_message: str = "Internal server error"

    def __init__(self, message: str | None = None, *, error_code: str | None = None) -> None:
        self.message = message or self.default_message
        if error_code is not None:
            self.error_code = error_code
        super().__init__(self.message)


class BadRequest(ApiError):
    status_code, error_code, default_message = 400, "E1001", "Invalid input value"


class ValidationFailed(ApiError):
    status_code, error_code, default_message = 400, "E4000", "Validation failed"


class PayloadTooLarge(ApiError):
    status_code, error_code, default_message = 413, "E4000", "Request body too large"


class TenantMissing(ApiError):
    status_code, error_code, default_message = 400, "E2006", "X-Tenant-ID header is required"


class Unauthorized(ApiError):
    status_code, error_code, default_message = 401, "E2000", "Authentication required"


class TokenExpired(ApiError):
    status_code, error_code, default_message = 401, "E2002", "Token expired"


class TokenInvalid(ApiError):
    status_code, error_code, default_message = 401, "E2003", "Invalid token"


class Forbidden(ApiError):
    status_code, error_code, default_message = 403, "E2001", "Forbidden"


class TenantMismatch(ApiError):
    status_code, error_code, default_message = 403, "E2007", "Tenant mismatch"


class NotFound(ApiError):
    status_code, error_code, default_message = 404, "E1004", "Not found"


class MethodNotAllowed(ApiError):
    status_code, error_code, default_message = 405, "E1002", "Method not allowed"


class StoreUnavailable(ApiError):
    status_code, error_code, default_message = 503, "E5000", "Redis is unavailable"


class InternalError(ApiError):
    status_code, error_code, default_message = 500, "E1000", "Internal server error"


class MalformedSignal(AuraError):
    """A message on ``hitl:channel:*`` (or in ``hitl:signal:*``) that cannot be a decision."""


class PlannerError(AuraError):
    """The planner could not produce a plan or an answer; the message is shown to the user."""


class LeaseLost(AuraError):
    """This instance no longer holds the session's lease (it expired and another replica took it)."""


class ToolError(AuraError):
    """A tool could not do its job; the message is shown to the user."""
