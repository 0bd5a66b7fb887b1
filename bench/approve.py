"""Approvals as dwp-main-service's HitlManager makes them (CONTRACT §4.2-4.3).

GET ``hitl:request:{id}``, mark it approved, SET it back (30 min), SET
``hitl:signal:{sessionId}`` (5 min) and PUBLISH the signal JSON on
``hitl:channel:{sessionId}``. The harness's Redis connections are named
``bench-harness`` (CLIENT SETNAME) so that CLIENT LIST can tell them from the
server's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis

HARNESS_CLIENT_NAME: Final = "bench-harness"


def harness_redis(url: str) -> Redis:
    """A bounded pool that waits for a free connection (redis-py's default pool raises past 100)."""
    pool = BlockingConnectionPool.from_url(
        url, decode_responses=True, client_name=HARNESS_CLIENT_NAME, socket_timeout=30, max_connections=32, timeout=30
    )
    return Redis(connection_pool=pool)


def _approved(record: dict[str, Any], request_id: str, now_ms: int) -> tuple[str, str, str]:
    """(record JSON, signal JSON, session id) for an approval by user 1."""
    record.update(status="approved", approvedBy="1", approvedAt=now_ms)
    # main-service builds the signal with Map.of: key order is not part of it.
    signal = {"timestamp": now_ms // 1000, "status": "approved", "requestId": request_id, "type": "approval"}
    return json.dumps(record), json.dumps(signal), str(record["sessionId"])


class ApprovalError(RuntimeError):
    pass


async def approve(redis: Redis, request_id: str) -> tuple[float, int]:
    """One approval, command by command as main-service sends them.

    Returns ``(t_publish, receivers)``: ``time.perf_counter()`` just before the
    PUBLISH is written (the start of the approval→resume latency), and how many
    subscribers Redis delivered it to.
    """
    key = f"hitl:request:{request_id}"
    raw = await redis.get(key)
    if raw is None:
        raise ApprovalError(f"{key} does not exist")
    record_json, signal_json, session_id = _approved(json.loads(raw), request_id, int(time.time() * 1000))
    await redis.set(key, record_json, ex=1800)
    await redis.set(f"hitl:signal:{session_id}", signal_json, ex=300)
    t_publish = time.perf_counter()
    receivers = int(await redis.publish(f"hitl:channel:{session_id}", signal_json))
    return t_publish, receivers


async def approve_pipelined(redis: Redis, request_id: str) -> int:
    """The same writes in one round trip after the GET (throughput runs); returns receivers."""
    key = f"hitl:request:{request_id}"
    raw = await redis.get(key)
    if raw is None:
        raise ApprovalError(f"{key} does not exist")
    record_json, signal_json, session_id = _approved(json.loads(raw), request_id, int(time.time() * 1000))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(key, record_json, ex=1800)
        pipe.set(f"hitl:signal:{session_id}", signal_json, ex=300)
        pipe.publish(f"hitl:channel:{session_id}", signal_json)
        results = await pipe.execute()
    return int(results[-1])


async def approve_many(redis: Redis, request_ids: Sequence[str]) -> int:
    """Approve a batch: one MGET, then every SET/SET/PUBLISH in one pipeline. Returns receivers."""
    if not request_ids:
        return 0
    _, receivers = await approve_burst(redis, request_ids)
    return receivers


async def approve_burst(redis: Redis, request_ids: Sequence[str]) -> tuple[float, int]:
    """Approve every request at once: one MGET, then every SET/SET/PUBLISH in one pipeline.

    Returns ``(t_publish, receivers)``: ``time.perf_counter()`` just before the pipeline is sent.
    """
    raws = await redis.mget([f"hitl:request:{rid}" for rid in request_ids])
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for request_id, raw in zip(request_ids, raws, strict=True):
            if raw is None:
                raise ApprovalError(f"hitl:request:{request_id} does not exist")
            record_json, signal_json, session_id = _approved(json.loads(raw), request_id, now_ms)
            pipe.set(f"hitl:request:{request_id}", record_json, ex=1800)
            pipe.set(f"hitl:signal:{session_id}", signal_json, ex=300)
            pipe.publish(f"hitl:channel:{session_id}", signal_json)
        t_publish = time.perf_counter()
        results = await pipe.execute()
    return t_publish, sum(int(results[index]) for index in range(2, len(results), 3))


@dataclass(frozen=True, slots=True)
class RedisClients:
    """The server's connections as CLIENT LIST shows them (the harness's own excluded)."""

    total: int
    pubsub: int

    def __str__(self) -> str:
        return f"{self.total} ({self.pubsub} Pub/Sub)"


async def server_clients(redis: Redis) -> RedisClients:
    clients = await redis.client_list()
    theirs = [c for c in clients if c.get("name") != HARNESS_CLIENT_NAME]
    pubsub = sum(1 for c in theirs if str(c.get("psub", "0")) != "0" or str(c.get("sub", "0")) != "0")
    return RedisClients(total=len(theirs), pubsub=pubsub)
