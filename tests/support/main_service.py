"""What dwp-main-service's HitlManager does on approve/reject (CONTRACT §4.2-4.4), written
independently of Aura's own store so the tests check Aura against the Java behaviour."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis


async def decide(redis: Redis, request_id: str, approve: bool, *, user_id: str = "1", reason: str | None = None) -> None:
    key = f"hitl:request:{request_id}"
    raw = await redis.get(key)
    assert raw is not None, f"{key} does not exist"
    record: dict[str, Any] = json.loads(raw)
    now_ms = int(time.time() * 1000)
    if approve:
        record.update(status="approved", approvedBy=user_id, approvedAt=now_ms)
        signal: dict[str, Any] = {"timestamp": now_ms // 1000, "status": "approved", "requestId": request_id, "type": "approval"}
    else:
        record.update(status="rejected", rejectedBy=user_id, rejectedAt=now_ms, reason=reason or "User rejected")
        signal = {"reason": record["reason"], "type": "rejection", "requestId": request_id, "status": "rejected",
                  "timestamp": now_ms // 1000}
    session_id = record["sessionId"]
    await redis.set(key, json.dumps(record), ex=1800)
    await redis.set(f"hitl:signal:{session_id}", json.dumps(signal), ex=300)
    await redis.publish(f"hitl:channel:{session_id}", json.dumps(signal))


async def stored_request(redis: Redis, request_id: str) -> dict[str, Any]:
    """The request record as main-service reads it (``hitl:request:{id}``); it must exist."""
    return await _stored_object(redis, f"hitl:request:{request_id}")


async def stored_signal(redis: Redis, session_id: str) -> dict[str, Any]:
    """The decision stored for a session (``hitl:signal:{sid}``), as main-service writes it; it must exist."""
    return await _stored_object(redis, f"hitl:signal:{session_id}")


async def _stored_object(redis: Redis, key: str) -> dict[str, Any]:
    raw = await redis.get(key)
    assert raw is not None, f"{key} does not exist"
    value = json.loads(raw)
    assert isinstance(value, dict), raw
    return value
