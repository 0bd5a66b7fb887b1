"""HITL decision signals as main-service publishes them (CONTRACT §4.3).

A signal decides nothing in Aura (issue 10): a waiting session follows its ``hitl:request``
record, which main-service writes first. Aura builds signals to publish its own decisions,
and parses what it hears only to say in its log what a message claimed.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from aura.errors import MalformedSignal

DEFAULT_REJECTION_REASON = "User rejected"
MAX_SIGNAL_BYTES = 64 * 1024  # a decision is ~150 bytes; anything this large is not one (and is not parsed)


class Decision(str, enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"


_BY_TYPE = {"approval": Decision.APPROVED, "rejection": Decision.REJECTED}


@dataclass(frozen=True, slots=True)
class Signal:
    request_id: str
    decision: Decision
    reason: str | None = None
    timestamp: int | None = None

    def to_json(self) -> str:
        """The JSON main-service publishes (built from Map.of, so key order is not part of it)."""
        body: dict[str, Any] = {
            "type": "approval" if self.decision is Decision.APPROVED else "rejection",
            "requestId": self.request_id,
            "status": self.decision.value,
            "timestamp": self.timestamp,
        }
        if self.decision is Decision.REJECTED:
            body["reason"] = self.reason or DEFAULT_REJECTION_REASON
        return json.dumps(body, separators=(",", ":"))


def parse_signal(raw: str | bytes) -> Signal:
    """Parse a signal; raise MalformedSignal for anything that is not one.

    ``type`` decides; a ``status`` that contradicts it makes the signal malformed
    rather than guessed at.
    """
    if len(raw) > MAX_SIGNAL_BYTES:
        raise MalformedSignal(f"signal is larger than {MAX_SIGNAL_BYTES} bytes ({len(raw)})", raw[:200])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MalformedSignal(f"signal is not JSON: {type(exc).__name__}", raw[:200]) from exc
    if not isinstance(body, dict):
        raise MalformedSignal("signal is not a JSON object", raw)
    kind = body.get("type")
    decision = _BY_TYPE.get(kind) if isinstance(kind, str) else None  # a list as the type is not hashable
    if decision is None:
        raise MalformedSignal(f"signal type must be 'approval' or 'rejection' (got {body.get('type')!r})", raw)
    status = body.get("status")
    if status is not None and status != decision.value:
        raise MalformedSignal(f"signal type {body['type']!r} contradicts status {status!r}", raw)
    request_id = body.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        raise MalformedSignal("signal has no requestId", raw)
    reason = body.get("reason")
    timestamp = body.get("timestamp")
    return Signal(
        request_id=request_id,
        decision=decision,
        reason=reason if isinstance(reason, str) else None,
        timestamp=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )
