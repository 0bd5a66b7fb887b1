"""HITL end to end: real redis-server, real uvicorn, SSE stream + Redis wire contract (CONTRACT §3, §4).

Decisions are made the way dwp-main-service makes them (tests.support.main_service:
raw SET + PUBLISH) or through Aura's own /aura/hitl API, and the tests check what
the browser sees on the still-open stream and what the Java side sees in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import open_stream
from tests.support import main_service
from tests.support.auth import approver_headers, auth_headers
from tests.support.live_server import LiveServer
from tests.support.main_service import stored_request as stored
from tests.support.main_service import stored_signal
from tests.support.redis_server import close_pubsub
from tests.support.sse import Frame, SseStream
from tests.support.waiting import cancel_and_wait, wait_until

pytestmark = pytest.mark.anyio

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{8,}$")
KEYSPACE_PATTERN = "__keyspace@0__:hitl:request:*"


# -- helpers -----------------------------------------------------------------------------------
def sid_of(frame: Frame) -> str:
    """The session id: event ids are ``{sessionId}.{seq}``."""
    assert frame.id is not None
    return frame.id.split(".")[0]


def types(frames: list[Frame]) -> list[str | None]:
    return ["[DONE]" if f.is_done else f.type for f in frames]


def error_types(frames: list[Frame]) -> list[str]:
    return [str(f.body["errorType"]) for f in frames if f.type == "error"]


def is_state(frame: Frame, source: str, dest: str, trigger: str | None = None) -> bool:
    return (
        frame.type == "state"
        and frame.body.get("from") == source
        and frame.body.get("to") == dest
        and (trigger is None or frame.body.get("trigger") == trigger)
    )


def assert_in_order(frames: list[Frame], checks: list[tuple[str, Callable[[Frame], bool]]]) -> None:
    """Each check matches a later frame than the previous one (other frames may sit in between)."""
    position = 0
    for name, check in checks:
        for index in range(position, len(frames)):
            if check(frames[index]):
                position = index + 1
                break
        else:
            raise AssertionError(f"no {name!r} after position {position} in {types(frames)}: "
                                 f"{[f.data for f in frames[position:]]}")


def assert_ended_done(frames: list[Frame]) -> None:
    assert frames[-1].raw == b"data: [DONE]", types(frames)
    assert is_state(frames[-2], "executing", "done", "finish"), [f.data for f in frames[-3:]]
    assert not [f for f in frames if f.type == "error"], [f.data for f in frames if f.type == "error"]


async def readiness(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/aura/health", headers=auth_headers())  # the counts are for a token holder
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def awaiting_count(client: httpx.AsyncClient) -> int:
    return int((await readiness(client))["sessions"]["awaitingApproval"])


def approval_json(request_id: str) -> str:
    return json.dumps({"type": "approval", "requestId": request_id, "status": "approved",
                       "timestamp": int(time.time())})


def rejection_json(request_id: str, reason: str = "User rejected") -> str:
    return json.dumps({"type": "rejection", "requestId": request_id, "status": "rejected", "reason": reason,
                       "timestamp": int(time.time())})


class Pump:
    """Reads a stream's event frames in a background task, so a test can wait with a timeout
    and prove silence (cancelling ``SseStream.until`` mid-read would break the byte iterator)."""

    def __init__(self, stream: SseStream) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
        self.seen: list[Frame] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for frame in self.stream.events():  # comment-only frames (heartbeats) are skipped
                self.queue.put_nowait(frame)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the reader instead of being lost in the task
            self.queue.put_nowait(exc)

    async def next(self, timeout: float = 10) -> Frame:
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        self.seen.append(item)
        return item

    async def until(self, type_: str, timeout: float = 10) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if frame.type == type_:
                    return frame
                assert not frame.is_done, f"stream ended before a {type_!r} event: {types(self.seen)}"

    async def rest(self, timeout: float = 10) -> list[Frame]:
        out: list[Frame] = []
        async with asyncio.timeout(timeout):
            while not (out and out[-1].is_done):
                out.append(await self.next(timeout))
        return out

    async def assert_quiet(self, seconds: float) -> None:
        """No new (non-heartbeat) event within ``seconds``."""
        try:
            item = await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return
        detail = item.data if isinstance(item, Frame) else repr(item)
        raise AssertionError(f"the waiting session produced an event: {detail}")

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def pumped(stream: SseStream) -> AsyncIterator[Pump]:
    pump = Pump(stream)
    try:
        yield pump
    finally:
        await pump.aclose()


@dataclass
class Waiting:
    """An email session waiting for approval: the client, the pumped stream, its ids, its tenant's outbox."""

    client: httpx.AsyncClient
    pump: Pump
    sid: str
    rid: str
    outbox: str


@contextlib.asynccontextmanager
async def email_awaiting_approval(server: LiveServer, redis: Redis, tenant: str) -> AsyncIterator[Waiting]:
    """A new email session of user 1 of ``tenant`` on ``server``, read up to its `hitl` and `hitl_request`."""
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream, pumped(stream) as pump:
            hitl = await pump.until("hitl")
            assert (await pump.next()).type == "hitl_request"
            yield Waiting(client, pump, sid_of(hitl), hitl.body["requestId"], outbox)


@contextlib.asynccontextmanager
async def on_new_request(
    redis: Redis, callback: Callable[[str, dict[str, Any]], Awaitable[None]], *, tenant: str
) -> AsyncIterator[list[BaseException]]:
    """Call ``callback(requestId, record)`` the instant a pending ``hitl:request:*`` of ``tenant``
    is created, using Redis keyspace notifications (the test redis-server runs with K$)."""
    seen: set[str] = set()
    errors: list[BaseException] = []
    pubsub = redis.pubsub()
    try:
        await pubsub.psubscribe(KEYSPACE_PATTERN)
        async with asyncio.timeout(5):  # subscribed for sure before any request can be created
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "psubscribe":
                    break

        async def listen() -> None:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None or message["type"] != "pmessage" or message["data"] != "set":
                    continue
                request_id = message["channel"].split("hitl:request:", 1)[1]
                if request_id in seen:
                    continue
                seen.add(request_id)
                raw = await redis.get(f"hitl:request:{request_id}")
                record = json.loads(raw) if raw else {}
                if record.get("tenantId") != tenant or record.get("status") != "pending":
                    continue
                try:
                    await callback(request_id, record)
                except Exception as exc:
                    errors.append(exc)

        task = asyncio.create_task(listen())
        try:
            yield errors
        finally:
            await cancel_and_wait(task)  # it talks to Redis: one cancel may be lost (see cancel_and_wait)
    finally:
        await close_pubsub(pubsub)
    assert not errors, errors


# -- 1. approve through main-service's Redis writes ------------------------------------------
async def test_contract_4_1_to_4_3_hitl_event_redis_records_and_java_approval_resume_the_same_stream(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CONTRACT §3.5 hitl, §4.2 keys/TTLs, §4.3 raw PUBLISH approval, §3.8 resume on the same stream."""
    tenant, sub = "101", "7"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    started_ms = int(time.time() * 1000)
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers(sub, tenant, **{"X-User-ID": sub})) as stream:
        hitl = await stream.until("hitl")
        seen_ms = int(time.time() * 1000)
        before = list(stream.frames)
        sid, rid = sid_of(hitl), hitl.body["requestId"]

        # The hitl event (CONTRACT §3.5).
        body = hitl.body
        assert URL_SAFE.match(rid) and quote(rid, safe="") == rid, rid
        assert body["sessionId"] == sid
        assert body["actionType"] == "send_email" and body["action"] == "send_email"
        assert isinstance(body["message"], str) and body["message"].strip()
        assert body["params"]["to"] == "kim@example.com"
        assert body["params"]["body"] == "the release is ready"
        assert body["context"] == body["params"]
        assert body["requiresApproval"] is True
        # The session paused before announcing it: executing -> awaiting_approval precedes hitl.
        assert is_state(before[-2], "executing", "awaiting_approval", "request_approval"), types(before)
        assert "tool_execution" not in types(before)
        send_step = next(f.body["id"] for f in before if f.type == "plan_step" and f.body.get("tool") == "send_email")

        # The request record as main-service reads it (CONTRACT §4.2).
        record = await stored(redis, rid)
        assert record["requestId"] == rid
        assert record["sessionId"] == sid
        assert record["userId"] == sub  # JWT sub
        assert record["tenantId"] == tenant and isinstance(record["tenantId"], str)  # X-Tenant-ID as a string
        assert record["actionType"] == "send_email"
        assert isinstance(record["context"], dict) and record["context"]["to"] == "kim@example.com"
        assert record["status"] == "pending"
        assert isinstance(record["createdAt"], int) and started_ms - 1000 <= record["createdAt"] <= seen_ms + 1000
        assert 1790 <= await redis.ttl(f"hitl:request:{rid}") <= 1800
        assert await redis.get(f"hitl:session:{sid}") == rid  # bare requestId, as Java writes it
        assert 3590 <= await redis.ttl(f"hitl:session:{sid}") <= 3600
        assert await redis.llen(outbox) == 0  # nothing sent before the approval

        await main_service.decide(redis, rid, True, user_id=sub)
        rest = await stream.rest()

    assert_in_order(rest, [
        ("state awaiting_approval->executing", lambda f: is_state(f, "awaiting_approval", "executing", "approve")),
        ("plan_step_update approved", lambda f: f.type == "plan_step_update" and f.body == {"id": send_step, "status": "approved"}),
        ("tool_execution executing", lambda f: f.type == "tool_execution" and f.body["status"] == "executing"),
        ("tool_execution completed", lambda f: f.type == "tool_execution" and f.body["status"] == "completed"),
        ("content", lambda f: f.type == "content"),
        ("state executing->done", lambda f: is_state(f, "executing", "done", "finish")),
    ])
    assert_ended_done(rest)
    executing, completed = [f.body for f in rest if f.type == "tool_execution"]
    assert executing["tool"] == completed["tool"] == "send_email"
    assert executing["params"] == completed["params"] == hitl.body["params"]

    # The email really landed in the tenant's outbox, and the result names it.
    messages = [json.loads(m) for m in await redis.lrange(outbox, 0, -1)]
    assert len(messages) == 1, messages
    message = messages[0]
    assert message["to"] == ["kim@example.com"]
    assert message["body"] == "the release is ready"
    assert message["sessionId"] == sid and message["fromUserId"] == sub
    assert completed["result"] == f"email {message['messageId']} to kim@example.com placed in outbox {outbox}"
    assert any(completed["result"] in f.body["content"] for f in rest if f.type == "content")


# -- 2. approve through Aura's own API --------------------------------------------------------
async def test_contract_4_4_approve_endpoint_resumes_stream_and_second_approve_is_idempotent_409(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CONTRACT §4.4: POST /aura/hitl/approve → 200 envelope, signal written; a repeat → 409 success:true."""
    tenant = "102"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream:
        hitl = await stream.until("hitl")
        sid, rid = sid_of(hitl), hitl.body["requestId"]
        response = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"},
                                      headers=approver_headers("1", tenant))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "SUCCESS" and body["success"] is True
        assert body["message"] == "Request approved successfully"
        assert body["data"] == {"requestId": rid, "sessionId": sid, "status": "approved"}
        assert "errorCode" not in body
        rest = await stream.rest()

    assert_in_order(rest, [
        ("approve", lambda f: is_state(f, "awaiting_approval", "executing", "approve")),
        ("tool completed", lambda f: f.type == "tool_execution" and f.body["status"] == "completed"),
    ])
    assert_ended_done(rest)
    assert await redis.llen(outbox) == 1

    # What main-service would have written (CONTRACT §4.2-4.3).
    record = await stored(redis, rid)
    assert record["status"] == "approved" and record["approvedBy"] == "1"
    assert isinstance(record["approvedAt"], int) and record["approvedAt"] > 10**12  # epoch ms
    signal = await stored_signal(redis, sid)
    assert signal["type"] == "approval" and signal["requestId"] == rid and signal["status"] == "approved"
    assert isinstance(signal["timestamp"], int) and abs(signal["timestamp"] - time.time()) < 60  # seconds
    assert 290 <= await redis.ttl(f"hitl:signal:{sid}") <= 300

    again = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"}, headers=approver_headers("1", tenant))
    assert again.status_code == 409, again.text
    body = again.json()
    assert body["success"] is True and body["status"] == "SUCCESS"
    assert body["message"] == "Request was already processed (idempotent)"
    assert body["data"]["status"] == "approved" and body["data"]["requestId"] == rid
    assert (await stored(redis, rid))["approvedAt"] == record["approvedAt"]  # 409 writes nothing
    assert await redis.llen(outbox) == 1


# -- 3. reject ---------------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["main_service_publish", "aura_reject_endpoint"])
async def test_contract_3_8_rejection_aborts_with_rejection_error_and_runs_no_tool(
    client: httpx.AsyncClient, redis: Redis, via: str
) -> None:
    """CONTRACT §3.8/§4.3: a rejection ends the run: state →aborted(rejected), error RejectionError, [DONE]."""
    tenant = "103" if via == "main_service_publish" else "104"
    reason = f"Not before the review ({via})"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream:
        hitl = await stream.until("hitl")
        sid, rid = sid_of(hitl), hitl.body["requestId"]
        if via == "main_service_publish":
            await main_service.decide(redis, rid, False, reason=reason)
        else:
            response = await client.post(f"/aura/hitl/reject/{rid}", json={"userId": "1", "reason": reason},
                                          headers=approver_headers("1", tenant))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["success"] is True and body["message"] == "Request rejected"
            assert body["data"] == {"requestId": rid, "sessionId": sid, "status": "rejected", "reason": reason}
        rest = await stream.rest()
        everything = list(stream.frames)

    assert rest[-1].raw == b"data: [DONE]", types(rest)
    aborted = [f for f in rest if f.type == "state"]
    assert len(aborted) == 1 and is_state(aborted[0], "awaiting_approval", "aborted", "reject"), types(rest)
    assert aborted[0].body["reason"] == "rejected"
    errors = [f for f in rest if f.type == "error"]
    assert len(errors) == 1, types(rest)
    error = errors[0].body
    assert error["errorType"] == "RejectionError"
    assert reason in error["message"]
    assert rest.index(aborted[0]) < rest.index(errors[0])
    # CONTRACT §3.8: the error is followed directly by [DONE] (regression: a "skipped" update used to trail it).
    assert rest.index(errors[0]) == len(rest) - 2, types(rest)
    skipped = [f for f in rest if f.type == "plan_step_update" and f.body["status"] == "skipped"]
    assert len(skipped) == 1 and rest.index(skipped[0]) < rest.index(aborted[0]), types(rest)
    assert "tool_execution" not in types(everything)
    # The one `content` is the explanation before the error (CONTRACT §3.8), with the reviewer's reason.
    [explanation] = [f for f in rest if f.type == "content"]
    assert rest.index(explanation) == len(rest) - 3
    assert explanation.body == {"content": f"I did not run send_email: the request was rejected. Reason: {reason}",
                                "format": "markdown"}
    assert await redis.exists(outbox) == 0
    record = await stored(redis, rid)
    assert record["status"] == "rejected" and record["reason"] == reason


# -- 4. the fastest possible approval ---------------------------------------------------------
async def test_contract_4_1_step2_approval_published_the_instant_the_key_appears_is_never_lost(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CONTRACT §4.1 step 2: Aura listens before writing hitl:request, so 50 instant approvals all land."""
    tenant, workers, per_worker = "404", 5, 10
    approved: dict[str, asyncio.Queue[str]] = {f"fast-{w}": asyncio.Queue() for w in range(workers)}

    async def approve_at_once(request_id: str, record: dict[str, Any]) -> None:
        await main_service.decide(redis, request_id, True, user_id=record["userId"])
        approved[record["userId"]].put_nowait(request_id)

    async def worker(sub: str) -> int:
        done = 0
        for _ in range(per_worker):
            async with open_stream(client, EMAIL_PROMPT, headers=auth_headers(sub, tenant)) as stream:
                # Not one frame read yet: the approval is already published when the client sees hitl.
                request_id = await asyncio.wait_for(approved[sub].get(), 10)
                # Well inside the 5 s sweep: a lost PUBLISH cannot hide behind the periodic re-check.
                frames = await stream.rest(timeout=2.5)
            hitl = next(f for f in frames if f.type == "hitl")
            assert hitl.body["requestId"] == request_id
            assert_in_order(frames, [
                ("hitl", lambda f: f.type == "hitl"),
                ("approve", lambda f: is_state(f, "awaiting_approval", "executing", "approve")),
                ("tool completed", lambda f: f.type == "tool_execution" and f.body["status"] == "completed"),
            ])
            assert_ended_done(frames)
            done += 1
        return done

    await redis.delete(f"aura:outbox:{tenant}")
    started = time.monotonic()
    async with on_new_request(redis, approve_at_once, tenant=tenant):
        results = await asyncio.gather(*(worker(sub) for sub in approved))
    assert sum(results) == workers * per_worker == 50
    assert await redis.llen(f"aura:outbox:{tenant}") == 50
    assert time.monotonic() - started < 45


# -- 5. many waiting sessions, one subscriber -------------------------------------------------
async def test_contract_4_1_two_waiting_sessions_are_resumed_independently_in_any_order(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CONTRACT §4.1/§4.3: a signal on hitl:channel:{B} resumes B only; A keeps waiting until its own."""
    tenant = "105"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    baseline = await awaiting_count(client)
    async with (
        open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream_a,
        open_stream(client, EMAIL_PROMPT, headers=auth_headers("2", tenant)) as stream_b,
        pumped(stream_a) as a,
        pumped(stream_b) as b,
    ):
        hitl_a, hitl_b = await a.until("hitl"), await b.until("hitl")
        sid_a, rid_a = sid_of(hitl_a), hitl_a.body["requestId"]
        sid_b, rid_b = sid_of(hitl_b), hitl_b.body["requestId"]
        assert sid_a != sid_b and rid_a != rid_b
        assert (await a.next()).type == "hitl_request"
        assert (await b.next()).type == "hitl_request"
        assert await awaiting_count(client) == baseline + 2

        await main_service.decide(redis, rid_b, True, user_id="2")  # the second one first
        rest_b = await b.rest()
        assert_ended_done(rest_b)
        await a.assert_quiet(0.5)
        assert (await stored(redis, rid_a))["status"] == "pending"
        assert (await stored(redis, rid_b))["status"] == "approved"
        assert await awaiting_count(client) == baseline + 1
        sent = [json.loads(m) for m in await redis.lrange(outbox, 0, -1)]
        assert [m["sessionId"] for m in sent] == [sid_b]

        await main_service.decide(redis, rid_a, True, user_id="1")
        rest_a = await a.rest()
        assert_ended_done(rest_a)
    sent = [json.loads(m) for m in await redis.lrange(outbox, 0, -1)]
    assert sorted(m["sessionId"] for m in sent) == sorted([sid_a, sid_b])
    assert {m["sessionId"]: m["fromUserId"] for m in sent} == {sid_a: "1", sid_b: "2"}
    assert await awaiting_count(client) == baseline


async def test_contract_4_1_fifty_concurrent_waits_share_one_pubsub_connection_and_all_finish(
    client: httpx.AsyncClient, aura: LiveServer, redis: Redis
) -> None:
    """CONTRACT §4.1/§4.3: 50 sessions wait at once, approvals in random order all land; O(1) subscribers."""
    tenant, count = "106", 50
    await redis.delete(f"aura:outbox:{tenant}")
    waiting: dict[int, str] = {}
    all_waiting = asyncio.Event()
    go = asyncio.Event()

    async def session(n: int) -> tuple[str, str, list[Frame]]:
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers(f"user-{n}", tenant)) as stream:
            hitl = await stream.until("hitl", timeout=20)
            waiting[n] = hitl.body["requestId"]
            if len(waiting) == count:
                all_waiting.set()
            await go.wait()
            return sid_of(hitl), hitl.body["requestId"], await stream.rest(timeout=20)

    tasks = [asyncio.create_task(session(n)) for n in range(count)]
    try:
        async with asyncio.timeout(30):
            await all_waiting.wait()
        assert (await readiness(client))["sessions"]["awaitingApproval"] >= count

        # One pattern subscription for the whole process, not one per session.
        subscribers = [c for c in await redis.client_list()
                       if int(c.get("sub", 0)) > 0 or int(c.get("psub", 0)) > 0
                       or c.get("cmd") in ("subscribe", "psubscribe")]
        assert 1 <= len(subscribers) <= 2, subscribers
        sid_channels = await redis.pubsub_channels("hitl:channel:*")
        assert sid_channels == [], sid_channels

        go.set()
        order = list(waiting.items())
        random.shuffle(order)
        for n, request_id in order:
            await main_service.decide(redis, request_id, True, user_id=f"user-{n}")
        async with asyncio.timeout(30):
            results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    for sid, request_id, frames in results:
        assert_ended_done(frames)
        assert any(is_state(f, "awaiting_approval", "executing", "approve") for f in frames)
        assert (await stored(redis, request_id))["sessionId"] == sid
    assert len({sid for sid, _, _ in results}) == count
    sent = [json.loads(m) for m in await redis.lrange(f"aura:outbox:{tenant}", 0, -1)]
    assert sorted(m["sessionId"] for m in sent) == sorted(sid for sid, _, _ in results)


# -- 6. signals that must change nothing ------------------------------------------------------
async def test_contract_4_3_malformed_stale_duplicate_and_late_signals_are_ignored(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    """CONTRACT §4.3/§4.4: only a well-formed decision for the pending requestId resumes; duplicates are no-ops."""
    server: LiveServer = start_server(signal_sweep_seconds=0.1)
    tenant = "606"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream, pumped(stream) as pump:
            hitl = await pump.until("hitl")
            sid, rid = sid_of(hitl), hitl.body["requestId"]
            assert (await pump.next()).type == "hitl_request"
            hub = server.runtime.hub
            ignored_before, woken_before = hub.ignored_signals, hub.wakeups
            channel = f"hitl:channel:{sid}"
            bogus = [
                (channel, "this is not JSON {"),
                (channel, json.dumps([{"type": "approval", "requestId": rid}])),
                (channel, json.dumps({"type": "approval"})),
                (channel, json.dumps({"type": "approval", "requestId": "", "status": "approved"})),
                (channel, json.dumps({"type": "bogus", "requestId": rid, "status": "approved"})),
                (channel, approval_json("req_" + "0" * 24)),  # stale: another request of this session
                (channel, rejection_json("req_" + "1" * 24)),
                (f"hitl:channel:sess_{'f' * 24}", approval_json(rid)),  # right id, another session's channel
            ]
            for name, payload in bogus:
                assert await redis.publish(name, payload) >= 1  # the hub's pattern subscription got it

            async def all_seen() -> bool:
                # Each message on the session's channel wakes it (its record is read, and says pending);
                # the other session's wakes nobody here.
                return (hub.wakeups >= woken_before + len(bogus) - 1 and hub.ignored_signals >= ignored_before + 1
                        and not hub.reading)

            await wait_until(all_seen, 5, "the hub to receive every bogus signal")
            await pump.assert_quiet(0.5)
            health = await readiness(client)
            assert health["sessions"]["awaitingApproval"] == 1 and health["sessions"]["live"] == 1
            assert (await stored(redis, rid))["status"] == "pending"

            await main_service.decide(redis, rid, True)
            rest = await pump.rest()
            assert_ended_done(rest)
            assert stream.frames[-1].is_done

            # Duplicate approval and a late rejection for the same request, after the end.
            ignored_before = hub.ignored_signals
            await redis.publish(channel, approval_json(rid))
            await redis.publish(channel, rejection_json(rid, "too late"))
            late = await client.post(f"/aura/hitl/reject/{rid}", json={"userId": "1", "reason": "too late"},
                                     headers=approver_headers("1", tenant))
            assert late.status_code == 409, late.text
            assert late.json()["success"] is True and late.json()["data"]["status"] == "approved"

            async def late_seen() -> bool:
                return hub.ignored_signals >= ignored_before + 2

            await wait_until(late_seen, 5, "the hub to receive the late signals")
        record = await stored(redis, rid)
        assert record["status"] == "approved" and "reason" not in record and "rejectedBy" not in record
        assert await redis.llen(outbox) == 1
        health = await readiness(client)
        assert health["status"] == "UP"
        assert health["sessions"]["awaitingApproval"] == 0 and health["sessions"]["live"] == 0


async def test_contract_4_3_stale_decision_already_in_signal_key_does_not_resolve_a_new_request(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    """CONTRACT §4.3: hitl:signal:{sid} may hold an older request's decision; it must be ignored."""
    server: LiveServer = start_server(signal_sweep_seconds=0.1)  # ten sweeps a second: none may take it
    tenant = "616"
    stale = {"old-approval": approval_json("req_" + "a" * 24), "old-rejection": rejection_json("req_" + "b" * 24)}
    planted: dict[str, str] = {}
    planted_sessions: asyncio.Queue[str] = asyncio.Queue()

    async def plant_stale(request_id: str, record: dict[str, Any]) -> None:
        kind = "old-approval" if not planted else "old-rejection"
        await redis.set(f"hitl:signal:{record['sessionId']}", stale[kind], ex=300)
        planted[record["sessionId"]] = kind
        planted_sessions.put_nowait(record["sessionId"])

    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        on_new_request(redis, plant_stale, tenant=tenant),
    ):
        for _ in range(2):  # a stale approval, then a stale rejection
            async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream:
                # Planted the instant hitl:request appeared, before the client has read a single frame.
                planted_sid = await asyncio.wait_for(planted_sessions.get(), 5)
                async with pumped(stream) as pump:
                    hitl = await pump.until("hitl")
                    sid, rid = sid_of(hitl), hitl.body["requestId"]
                    assert sid == planted_sid
                    assert await redis.get(f"hitl:signal:{sid}") == stale[planted[sid]]
                    assert (await pump.next()).type == "hitl_request"
                    await pump.assert_quiet(0.6)  # ≥ 5 sweeps have read the stale decision
                    assert (await readiness(client))["sessions"]["awaitingApproval"] == 1
                    assert (await stored(redis, rid))["status"] == "pending"
                    await main_service.decide(redis, rid, True)
                    assert_ended_done(await pump.rest())
    assert sorted(planted.values()) == ["old-approval", "old-rejection"]


# -- 7. a decision whose PUBLISH was lost -----------------------------------------------------
@pytest.mark.parametrize("written", ["signal_and_record", "record_only"])
async def test_contract_4_3_decision_stored_without_publish_is_picked_up_by_the_sweep(
    start_server: Callable[..., LiveServer], redis: Redis, written: str
) -> None:
    """CONTRACT §4.3: Pub/Sub is at-most-once; a decision recorded on hitl:request still resumes the run."""
    server: LiveServer = start_server(signal_sweep_seconds=0.2)
    tenant = "707"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream:
            hitl = await stream.until("hitl")
            sid, rid = sid_of(hitl), hitl.body["requestId"]
            assert (await stream.next_frame()).type == "hitl_request"
            record = await stored(redis, rid)  # main-service's writes, minus the PUBLISH
            record.update(status="approved", approvedBy="1", approvedAt=int(time.time() * 1000))
            await redis.set(f"hitl:request:{rid}", json.dumps(record), ex=1800)
            if written == "signal_and_record":
                await redis.set(f"hitl:signal:{sid}", approval_json(rid), ex=300)
            written_at = time.monotonic()
            rest = await stream.rest(timeout=5)
            resumed_after = time.monotonic() - written_at
    assert_in_order(rest, [
        ("approve", lambda f: is_state(f, "awaiting_approval", "executing", "approve")),
        ("tool completed", lambda f: f.type == "tool_execution" and f.body["status"] == "completed"),
    ])
    assert_ended_done(rest)
    assert resumed_after < 2.0, resumed_after


async def test_a_signal_stored_without_a_decided_record_does_not_resume_the_session(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    """Issue 10: the sweep reads hitl:request alone; a hitl:signal value the record lacks is nobody's decision."""
    server: LiveServer = start_server(signal_sweep_seconds=0.1)
    tenant = "717"
    async with email_awaiting_approval(server, redis, tenant) as waiting:
        pump, sid, rid, outbox = waiting.pump, waiting.sid, waiting.rid, waiting.outbox
        await redis.set(f"hitl:signal:{sid}", approval_json(rid), ex=300)
        await pump.assert_quiet(0.6)  # ≥ 5 sweeps
        assert (await stored(redis, rid))["status"] == "pending"
        assert await redis.llen(outbox) == 0
        await main_service.decide(redis, rid, False, reason="no")
        rest = await pump.rest()
    assert error_types(rest) == ["RejectionError"] and rest[-1].is_done
    assert await redis.llen(outbox) == 0


# -- 7b. a bare PUBLISH (issue 10 item 7) ------------------------------------------------------
async def test_a_bare_publish_does_not_run_the_tool_while_the_request_is_pending(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    """Issue 10 item 7: PUBLISH hitl:channel:{sid} '{"type":"approval","requestId":"<rid>"}' ran send_email
    while hitl:request still said pending. The message is a wake-up: the session reads its record, which
    main-service writes before it publishes (CONTRACT §4.1 step 6), finds it pending, and keeps waiting."""
    server: LiveServer = start_server(signal_sweep_seconds=0.1)
    tenant = "727"
    async with email_awaiting_approval(server, redis, tenant) as waiting:
        client, pump, sid, rid, outbox = waiting.client, waiting.pump, waiting.sid, waiting.rid, waiting.outbox
        hub = server.runtime.hub
        unconfirmed = hub.unconfirmed_wakeups
        for payload in (json.dumps({"type": "approval", "requestId": rid}), approval_json(rid),
                        rejection_json(rid, "forged")):
            assert await redis.publish(f"hitl:channel:{sid}", payload) >= 1
            await wait_until(lambda: hub.unconfirmed_wakeups > unconfirmed, 5, "the record to be read")
            unconfirmed = hub.unconfirmed_wakeups
        await pump.assert_quiet(0.5)  # and ≥ 4 sweeps, which read the record too
        assert (await stored(redis, rid))["status"] == "pending"
        assert await redis.llen(outbox) == 0
        assert (await readiness(client))["sessions"]["awaitingApproval"] >= 1
        await main_service.decide(redis, rid, False)  # end it
        rest = await pump.rest()
    assert "tool_execution" not in types(rest) and error_types(rest) == ["RejectionError"]
    assert await redis.llen(outbox) == 0


@pytest.mark.parametrize("approver", ["aura_approve_endpoint", "main_service"])
async def test_a_later_human_approval_after_a_bare_publish_runs_the_tool_once(
    start_server: Callable[..., LiveServer], redis: Redis, approver: str
) -> None:
    """Issue 10 item 7: after the bare PUBLISH had run the tool, a human approval still got 200 for an
    action that had already happened. Now the human's approval is the one that runs it, exactly once."""
    server: LiveServer = start_server(signal_sweep_seconds=0.1)
    tenant = "737" if approver == "main_service" else "747"
    async with email_awaiting_approval(server, redis, tenant) as waiting:
        client, pump, sid, rid, outbox = waiting.client, waiting.pump, waiting.sid, waiting.rid, waiting.outbox
        hub = server.runtime.hub
        unconfirmed = hub.unconfirmed_wakeups
        assert await redis.publish(f"hitl:channel:{sid}", approval_json(rid)) >= 1
        await wait_until(lambda: hub.unconfirmed_wakeups > unconfirmed, 5, "the record to be read")
        await pump.assert_quiet(0.3)
        assert await redis.llen(outbox) == 0

        if approver == "main_service":
            await main_service.decide(redis, rid, True)
        else:
            response = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"},
                                          headers=approver_headers("1", tenant))
            assert response.status_code == 200, response.text
        rest = await pump.rest()
        assert_ended_done(rest)
        assert [f.body["status"] for f in rest if f.type == "tool_execution"] == ["executing", "completed"]

        # Duplicates after the end (CONTRACT §4.4) change nothing, and a second approval is a 409.
        await redis.publish(f"hitl:channel:{sid}", approval_json(rid))
        again = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"},
                                  headers=approver_headers("1", tenant))
        assert again.status_code == 409, again.text
    assert await redis.llen(outbox) == 1


# -- 8. nobody decides ------------------------------------------------------------------------
async def test_contract_4_5_hitl_timeout_aborts_withdraws_the_request_and_refuses_late_approval(
    start_server: Callable[..., LiveServer], redis: Redis
) -> None:
    """CONTRACT §4.5: on Aura's timeout the stream ends (TimeoutError) and the record says rejected/timeout."""
    server: LiveServer = start_server(hitl_timeout_seconds=1)
    tenant = "808"
    outbox = f"aura:outbox:{tenant}"
    await redis.delete(outbox)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", tenant)) as stream:
            hitl = await stream.until("hitl")
            sid, rid = sid_of(hitl), hitl.body["requestId"]
            aborted = await stream.until("state", timeout=10)
            rest = [aborted, *await stream.rest(timeout=10)]
            everything = list(stream.frames)

        assert is_state(aborted, "awaiting_approval", "aborted", "time_out"), aborted.data
        assert aborted.body["reason"] == "timeout"
        record = await stored(redis, rid)
        # Measured by the server's own clock (the record's createdAt and rejectedAt, epoch ms), so a
        # client that reads late on a loaded machine cannot skew it: one timeout, not two, not zero.
        waited_ms = record["rejectedAt"] - record["createdAt"]
        assert 1000 <= waited_ms < 1900, waited_ms
        errors = [f for f in rest if f.type == "error"]
        assert len(errors) == 1 and errors[0].body["errorType"] == "TimeoutError", types(rest)
        assert rest[-1].raw == b"data: [DONE]"
        assert rest[-2] is errors[0], types(rest)  # CONTRACT §3.8: error, then [DONE]
        assert "tool_execution" not in types(everything)

        assert record["status"] == "rejected" and record["reason"] == "timeout"
        assert record["sessionId"] == sid and record["rejectedBy"] == "aura"

        late = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"},
                                 headers=approver_headers("1", tenant))
        assert late.status_code == 409, late.text
        body = late.json()
        assert body["success"] is True and body["message"] == "Request was already processed (idempotent)"
        assert body["data"]["status"] == "rejected"
        assert await redis.exists(f"hitl:signal:{sid}") == 0  # 409: no write, no publish
        assert (await stored(redis, rid))["status"] == "rejected"
        assert (await readiness(client))["sessions"]["live"] == 0
    assert await redis.exists(outbox) == 0


# -- 9. another tenant tries to decide --------------------------------------------------------
async def test_contract_2_4_approve_by_another_tenant_is_403_e2007_and_the_session_keeps_waiting(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CONTRACT §2.4/§4.2: stored tenantId 1 ≠ approver's X-Tenant-ID 2 → 403 E2007 "Tenant mismatch"."""
    outbox = "aura:outbox:1"
    baseline = await awaiting_count(client)
    outbox_before = await redis.llen(outbox)
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", "1")) as stream, pumped(stream) as pump:
        hitl = await pump.until("hitl")
        rid = hitl.body["requestId"]
        assert (await pump.next()).type == "hitl_request"
        for action, body in (("approve", {"userId": "1"}), ("reject", {"userId": "1", "reason": "mine now"})):
            response = await client.post(f"/aura/hitl/{action}/{rid}", json=body,
                                         headers=approver_headers("1", "2"))
            assert response.status_code == 403, response.text
            error = response.json()
            assert error["status"] == "ERROR" and error["success"] is False
            assert error["errorCode"] == "E2007" and error["message"] == "Tenant mismatch"
            assert "data" not in error
        await pump.assert_quiet(0.5)
        assert await awaiting_count(client) == baseline + 1
        record = await stored(redis, rid)
        assert record["status"] == "pending" and "approvedBy" not in record and "rejectedBy" not in record
        assert await redis.llen(outbox) == outbox_before

        ok = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"}, headers=approver_headers("1", "1"))
        assert ok.status_code == 200, ok.text
        assert_ended_done(await pump.rest())
    assert await redis.llen(outbox) == outbox_before + 1
