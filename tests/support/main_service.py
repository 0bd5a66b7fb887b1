"""What dwp-main-service's HitlManager does on approve/reject (CONTRACT §4.2-4.4), written
independently of Aura's own store so the tests check Aura against the Java behaviour."""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis


async def decide(redis: Redis, request_id: str, approve: bool, *, user_id: str = "1", reason: str | None = None) -> None:
    key = f"hitl:request:{request_id}"
    raw = await redis.get(key)
    assert raw is not None, f"{key} does not exist"
    record = json.loads(raw)
    now_ms = int(time.time() * 1000)
    if approve:
        record.update(status="approved", approvedBy=user_id, approvedAt=now_ms)
        signal = {"timestamp": now_ms // 1000, "status": "approved", "requestId": request_id, "type": "approval"}
    else:
        record.update(status="rejected", rejectedBy=user_id, rejectedAt=now_ms, reason=reason or "User rejected")
        signal = {"reason": record["reason"], "type": "rejection", "requestId": request_id, "status": "rejected",
                  "timestamp": now_ms // 1000}
    session_id = record["sessionId"]
    await redis.set(key, json.dumps(record), ex=1800)
    await redis.set(f"hitl:signal:{session_id}", json.dumps(signal), ex=300)
    await redis.publish(f"hitl:channel:{session_id}", json.dumps(signal))
