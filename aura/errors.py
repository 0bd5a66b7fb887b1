"""Aura's one exception hierarchy. Every exception carries its context as attributes.

    AuraError
    ├── ConfigError            bad environment or tools file; raised at start-up, never at request time
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
    │   ├── TooManyRequests    429 E1005: a per-user or per-tenant limit (``limit``, ``retry_after_seconds``)
    │   ├── HttpError          any other status Starlette raised, E1001
    │   ├── StoreUnavailable   503 E5000: Redis failed or did not answer in time (``operation``, ``__cause__``)
    │   └── InternalError      500 E1000
    ├── MalformedSignal        a HITL signal that is not the JSON of CONTRACT §4.3 (``raw``)
    ├── PlannerError           the planner (e.g. the LLM) failed or answered garbage; the session aborts
    ├── LeaseLost              another instance now drives ``session_id``; this one stops touching it
    ├── NotReplicated          fewer replicas than required acknowledged ``session_id``'s writes (WAIT);
    │                          the ``__cause__`` of the StoreUnavailable that keeps a side effect from running
    ├── TransitionRefused      the machine refused ``trigger`` in ``state`` for ``session_id``: a bug
    └── ToolError              ``tool`` failed; its message becomes tool_execution.error

Foreign errors (redis-py, OSError, timeouts) are mapped into this tree in one
place, :mod:`aura.storage.calls`, always ``from`` the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final


class AuraError(Exception):
    """Base of every error Aura raises on purpose."""


class ConfigError(AuraError):
    """The environment or a tools file does not describe a valid configuration."""


class ApiError(AuraError):
    """An error answered with the DWP envelope; status and code are fixed when it is made."""

    status_code: ClassVar[int] = 500
    default_error_code: ClassVar[str] = "E1000"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, error_code: str | None = None) -> None:
        self.message = message or self.default_message
        self.error_code = error_code or self.default_error_code
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error response carries besides the envelope's own (e.g. ``Retry-After``)."""
        return {}


class BadRequest(ApiError):
    status_code, default_error_code, default_message = 400, "E1001", "Invalid input value"


class ValidationFailed(ApiError):
    status_code, default_error_code, default_message = 400, "E4000", "Validation failed"


class PayloadTooLarge(ApiError):
    status_code, default_error_code, default_message = 413, "E4000", "Request body too large"


class TenantMissing(ApiError):
    status_code, default_error_code, default_message = 400, "E2006", "X-Tenant-ID header is required"


class Unauthorized(ApiError):
    status_code, default_error_code, default_message = 401, "E2000", "Authentication required"


class TokenExpired(ApiError):
    status_code, default_error_code, default_message = 401, "E2002", "Token expired"


class TokenInvalid(ApiError):
    status_code, default_error_code, default_message = 401, "E2003", "Invalid token"


class Forbidden(ApiError):
    status_code, default_error_code, default_message = 403, "E2001", "Forbidden"


class TenantMismatch(ApiError):
    status_code, default_error_code, default_message = 403, "E2007", "Tenant mismatch"


class NotFound(ApiError):
    status_code, default_error_code, default_message = 404, "E1004", "Not found"


class MethodNotAllowed(ApiError):
    status_code, default_error_code, default_message = 405, "E1002", "Method not allowed"


class TooManyRequests(ApiError):
    """A per-user or per-tenant limit is reached; ``Retry-After`` says when to try again.

    The DWP error codes have none for 429 (CONTRACT §2.7); E1005 is Aura's (docs/DECISIONS.md).
    """

    status_code, default_error_code, default_message = 429, "E1005", "Too many requests"

    def __init__(self, message: str, *, limit: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.limit = limit  # the setting that was reached, e.g. AURA_MAX_LIVE_SESSIONS_PER_USER
        self.retry_after_seconds = max(1, retry_after_seconds)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class HttpError(ApiError):
    """An HTTP status Starlette raised that has no class of its own; the status is the instance's."""

    default_error_code, default_message = "E1001", "Invalid input value"

    def __init__(self, http_status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status

    @property
    def status(self) -> int:
        return self.http_status


class StoreUnavailable(ApiError):
    """Redis failed or was too slow for ``operation``; the redis-py/OS error is ``__cause__``."""

    status_code, default_error_code, default_message = 503, "E5000", "Redis is unavailable"

    def __init__(self, operation: str, cause: BaseException) -> None:
        reason = "did not answer in time" if isinstance(cause, TimeoutError) else type(cause).__name__
        super().__init__(f"Redis is unavailable: {reason}")
        self.operation = operation
        self.cause = cause


class NotReplicated(AuraError):
    """Fewer replicas than required acknowledged a session's writes in time (``WAIT``)."""

    def __init__(self, session_id: str, acknowledged: int, required: int) -> None:
        super().__init__(f"{acknowledged} of {required} required Redis replica(s) acknowledged the write")
        self.session_id = session_id
        self.acknowledged = acknowledged
        self.required = required


class InternalError(ApiError):
    status_code, default_error_code, default_message = 500, "E1000", "Internal server error"


class MalformedSignal(AuraError):
    """A message on ``hitl:channel:*`` (or in ``hitl:signal:*``) that cannot be a decision."""

    def __init__(self, message: str, raw: str | bytes = "") -> None:
        super().__init__(message)
        self.raw = raw


class PlannerError(AuraError):
    """The planner could not produce a plan or an answer; the message is shown to the user."""


class LeaseLost(AuraError):
    """This instance no longer holds ``session_id``'s lease (it expired and another replica took it)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"{session_id} is driven by another instance")
        self.session_id = session_id


class TransitionRefused(AuraError):
    """The state machine refused a trigger the run relied on: a bug, reported as an internal error."""

    def __init__(self, session_id: str, trigger: str, state: str) -> None:
        super().__init__(f"session {session_id}: {trigger} refused in state {state}")
        self.session_id = session_id
        self.trigger = trigger
        self.state = state


class ToolError(AuraError):
    """``tool`` could not do its job; the message is shown to the user."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.message = message


@dataclass(frozen=True, slots=True)
class SessionErrorKind:
    """``errorType`` and ``code`` of a session's `error` event (docs/EVENTS.md), beside the HTTP codes above."""

    error_type: str
    code: str


REJECTED: Final = SessionErrorKind("RejectionError", Forbidden.default_error_code)  # E2001
APPROVAL_TIMEOUT: Final = SessionErrorKind("TimeoutError", "E5001")
TOOL_FAILED: Final = SessionErrorKind("ToolError", StoreUnavailable.default_error_code)  # E5000
PLANNER_FAILED: Final = SessionErrorKind("PlannerError", StoreUnavailable.default_error_code)  # E5000
CANCELLED: Final = SessionErrorKind("CancelledError", InternalError.default_error_code)  # E1000
INTERNAL: Final = SessionErrorKind("InternalError", InternalError.default_error_code)  # E1000
UNAUTHENTICATED: Final = SessionErrorKind("AuthenticationError", Unauthorized.default_error_code)  # E2000
# A followed session that vanished from Redis (expired, or lost with a failed-over primary).
SESSION_LOST: Final = SessionErrorKind("SessionLostError", StoreUnavailable.default_error_code)  # E5000
