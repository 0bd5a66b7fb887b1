"""The headers of every call Aura makes to a DWP service on a user's behalf (CONTRACT §2.3, §7 item 17)."""

from __future__ import annotations

from typing import Final

from aura.telemetry import tracing

SOURCE: Final = "AURA"
CALLER_TYPE: Final = "AGENT"


def outbound_headers(
    *, tenant_id: str, user_id: str, authorization: str | None = None, agent_id: str | None = None
) -> dict[str, str]:
    """X-Tenant-ID, X-User-ID, X-DWP-Source/Caller-Type, the token minted for this call and the agent id when
    known, and, when tracing, the current span's ``traceparent`` (a tool call's: the service's spans are its children)."""
    headers = {"X-Tenant-ID": tenant_id, "X-User-ID": user_id, "X-DWP-Source": SOURCE, "X-DWP-Caller-Type": CALLER_TYPE}
    if authorization:
        headers["Authorization"] = authorization
    if agent_id:
        headers["X-Agent-ID"] = agent_id
    tracing.inject(headers)
    return headers
