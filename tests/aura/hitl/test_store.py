"""HITL records in a real Redis, in main-service's format (CONTRACT §4.2-4.4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from aura.hitl.store import HitlStore, Outcome
from aura.ids import new_request_id, new_session_id
from aura.hitl.signals import Decision
from tests.support.redis_server import close_pubsub

pytestmark = pytest.mark.anyio


def record(tenant: str | int = "1") -> dict[str, Any]:
    return {
        "requestId": new_request_id(),
        "sessionId": new_session_id(),
        "userId": "1",
        "tenantId": tenant,
        "actionType": "send_email",
        "context": {"to": "kim@example.com"},
        "status": "pending",
        "createdAt": 1706152860123,
    }


async def stored_json(redis: Redis, key: str) -> Any:
    """The JSON document at ``key``, which must exist."""
    raw = await redis.get(key)
    assert raw is not None, f"{key} does not exist"
    return json.loads(raw)


async def test_create_request_writes_both_keys_with_java_ttls(redis: Redis) -> None:
    store, rec = HitlStore(redis), record()
    await store.create_request(rec)
    assert await stored_json(redis, f"hitl:request:{rec['requestId']}") == rec
    assert 1795 <= await redis.ttl(f"hitl:request:{rec['requestId']}") <= 1800
    assert await redis.get(f"hitl:session:{rec['sessionId']}") == rec["requestId"]
    assert 3595 <= await redis.ttl(f"hitl:session:{rec['sessionId']}") <= 3600


async def test_decide_applies_once_then_reports_already_processed(redis: Redis) -> None:
    store, rec = HitlStore(redis), record()
    await store.create_request(rec)
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"hitl:channel:{rec['sessionId']}")
    await pubsub.get_message(timeout=1)
    first = await store.decide(rec["requestId"], Decision.REJECTED, actor="7", tenant="1", reason="Not now")
    second = await store.decide(rec["requestId"], Decision.APPROVED, actor="7", tenant="1")
    assert first.outcome is Outcome.APPLIED and second.outcome is Outcome.ALREADY_PROCESSED
    assert second.status == "rejected"
    stored = await stored_json(redis, f"hitl:request:{rec['requestId']}")
    assert stored["status"] == "rejected" and stored["rejectedBy"] == "7" and stored["reason"] == "Not now"
    assert stored["actionType"] == "send_email"  # unknown and existing fields are preserved
    message = await pubsub.get_message(timeout=1)
    signal = json.loads(message["data"])
    assert signal["type"] == "rejection" and signal["reason"] == "Not now" and signal["requestId"] == rec["requestId"]
    assert await stored_json(redis, f"hitl:signal:{rec['sessionId']}") == signal
    assert 295 <= await redis.ttl(f"hitl:signal:{rec['sessionId']}") <= 300
    assert await pubsub.get_message(timeout=0.2) is None  # nothing published for the 409
    await close_pubsub(pubsub)


async def test_decide_not_found_tenant_mismatch_and_corrupt(redis: Redis) -> None:
    store = HitlStore(redis)
    assert (await store.decide("req_none", Decision.APPROVED, actor="1", tenant="1")).outcome is Outcome.NOT_FOUND
    rec = record(tenant="2")
    await store.create_request(rec)
    result = await store.decide(rec["requestId"], Decision.APPROVED, actor="1", tenant="1")
    assert result.outcome is Outcome.TENANT_MISMATCH
    non_numeric = record(tenant="tenant1")
    await store.create_request(non_numeric)
    result = await store.decide(non_numeric["requestId"], Decision.APPROVED, actor="1", tenant="1")
    assert result.outcome is Outcome.TENANT_MISMATCH  # fails closed, where Java skips the check
    await redis.set("hitl:request:req_corrupt", '{"status":"pending","tenantId":"1"}')  # no sessionId
    assert (await store.decide("req_corrupt", Decision.APPROVED, actor="1", tenant="1")).outcome is Outcome.CORRUPT


async def test_concurrent_decisions_apply_exactly_once(redis: Redis) -> None:
    store, rec = HitlStore(redis), record()
    await store.create_request(rec)
    results = await asyncio.gather(
        *(store.decide(rec["requestId"], Decision.APPROVED, actor=str(n), tenant="1") for n in range(10))
    )
    assert sorted(r.outcome.value for r in results).count(Outcome.APPLIED.value) == 1


async def test_withdraw_marks_pending_rejected_but_keeps_a_human_decision(redis: Redis) -> None:
    store = HitlStore(redis)
    pending = record()
    await store.create_request(pending)
    assert await store.withdraw(pending["requestId"], "timeout") is None
    stored = await stored_json(redis, f"hitl:request:{pending['requestId']}")
    assert stored["status"] == "rejected" and stored["reason"] == "timeout"
    assert await redis.ttl(f"hitl:request:{pending['requestId']}") > 0
    approved = record()
    await store.create_request(approved)
    await store.decide(approved["requestId"], Decision.APPROVED, actor="1", tenant="1")
    kept = await store.withdraw(approved["requestId"], "timeout")
    assert kept is not None and kept.decision is Decision.APPROVED
    assert await store.withdraw("req_vanished", "timeout") is None


async def test_decisions_for_reads_signal_then_record_and_ignores_stale(redis: Redis) -> None:
    store = HitlStore(redis)
    a, b, c = record(), record(), record()
    for rec in (a, b, c):
        await store.create_request(rec)
    await store.decide(a["requestId"], Decision.APPROVED, actor="1", tenant="1")
    # b: a stale signal for an older request of the same session
    await redis.set(f"hitl:signal:{b['sessionId']}", '{"type":"approval","requestId":"req_old","status":"approved"}')
    # c: record rejected by main-service, but the publish and signal were lost
    stored = {**c, "status": "rejected", "reason": "No"}
    await redis.set(f"hitl:request:{c['requestId']}", json.dumps(stored))
    found = await store.decisions_for([(r["sessionId"], r["requestId"]) for r in (a, b, c)])
    assert found[0] is not None and found[0].decision is Decision.APPROVED
    assert found[1] is None
    assert found[2] is not None and found[2].decision is Decision.REJECTED and found[2].reason == "No"


async def test_one_poisoned_entry_does_not_stop_the_sweep_finding_the_others_decisions(redis: Redis) -> None:
    """Regression (hardening): a signal nested 100k deep, or a record whose status is a list, made
    decisions_for raise for the whole batch, so another session's stored approval was never found."""
    store = HitlStore(redis)
    deep, listed, fine = record(), record(), record()
    for rec in (deep, listed, fine):
        await store.create_request(rec)
    await redis.set(f"hitl:signal:{deep['sessionId']}", "[" * 100_000 + "]" * 100_000)
    await redis.set(f"hitl:request:{listed['requestId']}", json.dumps({**listed, "status": ["approved"]}))
    await redis.set(f"hitl:request:{fine['requestId']}", json.dumps({**fine, "status": "approved"}))
    found = await store.decisions_for([(r["sessionId"], r["requestId"]) for r in (deep, listed, fine)])
    assert found[:2] == [None, None]
    assert found[2] is not None and found[2].decision is Decision.APPROVED
