"""Every Redis key and channel Aura reads or writes, in one place (docs/ARCHITECTURE.md, "Redis use").

The ``hitl:*`` names are main-service's (CONTRACT §4.2); the ``aura:*`` names are Aura's own.
"""

from __future__ import annotations

from typing import Final

# -- main-service's HITL keys (CONTRACT §4.2) -------------------------------------------
HITL_CHANNEL_PREFIX: Final = "hitl:channel:"
HITL_CHANNEL_PATTERN: Final = HITL_CHANNEL_PREFIX + "*"


def hitl_request(request_id: str) -> str:
    return f"hitl:request:{request_id}"


def hitl_session(session_id: str) -> str:
    return f"hitl:session:{session_id}"


def hitl_signal(session_id: str) -> str:
    return f"hitl:signal:{session_id}"


def hitl_channel(session_id: str) -> str:
    return HITL_CHANNEL_PREFIX + session_id


# -- Aura's sessions -------------------------------------------------------------------
LIVE_SESSIONS: Final = "aura:sessions:live"
EVENTS_CHANNEL_PREFIX: Final = "aura:events:"
EVENTS_CHANNEL_PATTERN: Final = EVENTS_CHANNEL_PREFIX + "*"
CANCEL_CHANNEL_PREFIX: Final = "aura:cancel:"
CANCEL_CHANNEL_PATTERN: Final = CANCEL_CHANNEL_PREFIX + "*"


def snapshot(session_id: str) -> str:
    return f"aura:session:{session_id}"


def events(session_id: str) -> str:
    return f"aura:session:{session_id}:events"


def lease(session_id: str) -> str:
    return f"aura:session:{session_id}:lease"


def followers(session_id: str) -> str:
    """Set while a replica that does not drive the session follows it: only then is an append published."""
    return f"aura:session:{session_id}:followers"


def instance(instance_id: str) -> str:
    return f"aura:instance:{instance_id}"


def events_channel(session_id: str) -> str:
    return EVENTS_CHANNEL_PREFIX + session_id


def cancel_channel(session_id: str) -> str:
    return CANCEL_CHANNEL_PREFIX + session_id


# -- the built-in tools' data ------------------------------------------------------------
def outbox(tenant_id: str) -> str:
    return f"aura:outbox:{tenant_id}"


def tasks(tenant_id: str) -> str:
    return f"aura:tasks:{tenant_id}"
