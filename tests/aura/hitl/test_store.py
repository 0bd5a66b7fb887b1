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
from tests.support.redis_server import RedisServer, close_pubsub

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


async def test_decisions_for_reads_only_the_record_and_what_it_says(redis: Redis) -> None:
    """Issue 10: the record decides; hitl:signal (stale, or without a decided record) is not read."""
    store = HitlStore(redis)
    approved, signal_only, rejected, default_reason, gone, expired = (record() for _ in range(6))
    for rec in (approved, signal_only, rejected, default_reason, expired):
        await store.create_request(rec)
    await store.decide(approved["requestId"], Decision.APPROVED, actor="1", tenant="1")
    # main-service's signal, but the record still pending (a bare SET of the key)
    await redis.set(f"hitl:signal:{signal_only['sessionId']}",
                    f'{{"type":"approval","requestId":"{signal_only["requestId"]}","status":"approved"}}')
    # rejected by main-service, the publish and signal lost
    await redis.set(f"hitl:request:{rejected['requestId']}", json.dumps({**rejected, "status": "rejected",
                                                                         "reason": "No"}))
    await redis.set(f"hitl:request:{default_reason['requestId']}", json.dumps({**default_reason,
                                                                               "status": "rejected"}))
    await redis.set(f"hitl:signal:{gone['sessionId']}",
                    f'{{"type":"approval","requestId":"{gone["requestId"]}","status":"approved"}}')
    await redis.set(f"hitl:request:{expired['requestId']}", json.dumps({**expired, "status": "expired"}))
    found = await store.decisions_for([(r["sessionId"], r["requestId"]) for r in
                                       (approved, signal_only, rejected, default_reason, gone, expired)])
    assert found[0] is not None and found[0].decision is Decision.APPROVED
    assert found[1] is None
    assert found[2] is not None and found[2].decision is Decision.REJECTED and found[2].reason == "No"
    assert found[3] is not None and found[3].reason == "User rejected"  # main-service's default (§4.2)
    assert found[4] is None  # the record is gone: the session waits for its timeout
    assert found[5] is None  # not a status main-service treats as final


async def test_a_record_of_another_session_is_not_its_decision(redis: Redis) -> None:
    store = HitlStore(redis)
    rec = record()
    await store.create_request({**rec, "status": "approved"})
    assert await store.decisions_for([(new_session_id(), rec["requestId"])]) == [None]
    assert await store.withdraw(rec["requestId"], "timeout", session_id=new_session_id()) is None
    assert (await stored_json(redis, f"hitl:request:{rec['requestId']}"))["status"] == "approved"  # not written
    kept = await store.withdraw(rec["requestId"], "timeout", session_id=rec["sessionId"])
    assert kept is not None and kept.decision is Decision.APPROVED


POISONED: list[Any] = [
    b"\xff\xfe not UTF-8",  # redis-py raised UnicodeDecodeError for the whole pipeline
    b"[" * 100_000 + b"]" * 100_000,  # nested past the recursion limit
    b'["approved"]',
    b"",
]


async def test_one_poisoned_entry_does_not_stop_the_sweep_finding_the_others_decisions(
    redis: Redis, redis_server: RedisServer
) -> None:
    """Regression (hardening): a poisoned value made decisions_for raise for the whole batch, so another
    session's stored approval was never found. Each entry is judged alone, and a corrupt one never approves."""
    store = HitlStore(redis)
    raw = Redis.from_url(redis_server.url)  # writes bytes as they are
    try:
        poisoned = [record() for _ in POISONED]
        for rec, value in zip(poisoned, POISONED, strict=True):
            await raw.set(f"hitl:request:{rec['requestId']}", value)
        listed, fine = record(), record()
        await redis.set(f"hitl:request:{listed['requestId']}", json.dumps({**listed, "status": ["approved"]}))
        await redis.set(f"hitl:request:{fine['requestId']}", json.dumps({**fine, "status": "approved"}))
        entries = [*poisoned, listed, fine]
        found = await store.decisions_for([(r["sessionId"], r["requestId"]) for r in entries])
        assert found[:-1] == [None] * (len(entries) - 1)
        assert found[-1] is not None and found[-1].decision is Decision.APPROVED
    finally:
        await raw.aclose()


async def test_a_record_that_is_not_utf8_is_refused_and_left_alone_not_a_500(
    redis: Redis, redis_server: RedisServer
) -> None:
    store = HitlStore(redis)
    raw = Redis.from_url(redis_server.url)
    try:
        request_id = new_request_id()
        await raw.set(f"hitl:request:{request_id}", b"\xff\xfe")
        result = await store.decide(request_id, Decision.APPROVED, actor="1", tenant="1")
        assert result.outcome is Outcome.TENANT_MISMATCH  # no tenant on it: fails closed
        assert await store.withdraw(request_id, "timeout") is None
        assert await store.request_for(request_id, "1") is None
        assert await raw.get(f"hitl:request:{request_id}") == b"\xff\xfe"
    finally:
        await raw.aclose()


# -- what the read API may show (issue 10 item 6) ---------------------------------------------------
@pytest.mark.parametrize(("stored", "shown"), [("1", True), (1, True), ("01", False), ("+1", False), (None, False),
                                               ("2", False), (True, False), (["1"], False)], ids=repr)
async def test_a_request_is_shown_to_its_own_tenant_only_compared_exactly(
    redis: Redis, stored: Any, shown: bool
) -> None:
    store = HitlStore(redis)
    rec = {**record(), "tenantId": stored}
    await store.create_request(rec)
    text = await store.request_for(rec["requestId"], "1")
    assert (text == await redis.get(f"hitl:request:{rec['requestId']}")) if shown else text is None


async def test_a_signal_is_shown_only_to_the_tenant_of_its_sessions_request(redis: Redis) -> None:
    store = HitlStore(redis)
    rec = record(tenant="7")
    await store.create_request(rec)
    await store.decide(rec["requestId"], Decision.APPROVED, actor="1", tenant="7")
    signal = await redis.get(f"hitl:signal:{rec['sessionId']}")
    assert signal is not None
    assert await store.signal_for(rec["sessionId"], "7") == signal
    assert await store.signal_for(rec["sessionId"], "1") is None
    # Without its request record the session's tenant cannot be told: nothing is shown.
    orphan = new_session_id()
    await redis.set(f"hitl:signal:{orphan}", signal)
    assert await store.signal_for(orphan, "7") is None
    await redis.set(f"hitl:session:{orphan}", rec["requestId"])  # pointing at another session's record
    assert await store.signal_for(orphan, "7") is None
