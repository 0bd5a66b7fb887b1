"""``GET /metrics`` against a real uvicorn and a real redis-server: it parses with prometheus_client's own
parser, and its counters move by exactly what one HITL session approved and another rejected did (CONTRACT
§4.1-4.4); a decision whose PUBLISH was lost is counted as found by the sweep; a Redis that is away shows
by operation; ``AURA_METRICS=false`` makes ``/metrics`` a 404 like any unknown route."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Final

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import open_stream
from tests.support.auth import approver_headers, auth_headers
from tests.support.live_server import LiveServer
from tests.support.main_service import stored_request
from tests.support.metrics import Scrape, labels, scrape
from tests.support.redis_server import RedisServer, free_port
from tests.support.sse import Frame, SseStream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"
TENANT = "9123"
HEARTBEAT = "keepalive id:-"


@pytest.fixture
async def server(
    start_server: Callable[..., LiveServer], private_redis_server: RedisServer, private_redis: Redis
) -> LiveServer:
    """A server alone on a Redis of its own (emptied first): no other test's session moves its counters,
    and heartbeats every 0.2 s so that a wait for a human sends some."""
    await private_redis.flushdb()
    return start_server(redis_url=private_redis_server.url, heartbeat_seconds=0.2, signal_sweep_seconds=0.2)


def heartbeats(frames: list[Frame]) -> int:
    return sum(1 for f in frames if f.comment == HEARTBEAT and f.data is None)


def events(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.id is not None]


async def read_heartbeats(stream: SseStream, count: int) -> None:
    with anyio.fail_after(10):
        while heartbeats(stream.frames) < count:
            await stream.next_frame()


async def streams_closed(client: httpx.AsyncClient) -> None:
    """The server has finished the responses (its writer's `finally` runs after the client's last byte)."""
    async def closed() -> bool:
        return (await scrape(client)).value("aura_sse_streams_open") == 0

    await wait_until(closed, 10, "no open SSE stream")


async def hitl_session(client: httpx.AsyncClient, decision: str) -> list[Frame]:
    """A HITL session decided through Aura's approval API (``approve`` or ``reject``); every frame it sent.

    Checks, while it waits, what the gauges say of it."""
    async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", TENANT)) as stream:
        hitl = await stream.until("hitl")
        await read_heartbeats(stream, 2)  # a wait for a human is kept alive
        waiting = await scrape(client)
        assert waiting.value("aura_sse_streams_open") == 1
        assert waiting.value("aura_sessions_live", state="awaiting_approval") == 1
        assert waiting.value("aura_sessions_live", state="executing") == 0
        assert waiting.value("aura_leases_held") == 1
        body = {"userId": "1"} if decision == "approve" else {"userId": "1", "reason": "not now"}
        response = await client.post(f"/aura/hitl/{decision}/{hitl.body['requestId']}", json=body,
                                     headers=approver_headers("1", TENANT))
        assert response.status_code == 200, response.text
        rest = await stream.rest()
        assert rest[-1].is_done
        frames = list(stream.frames)
    await streams_closed(client)
    return frames


# Counted per process, not per runtime (DECISIONS #61): other servers of the suite move it too.
PER_PROCESS: Final = frozenset({"aura_redis_errors_total"})


def counters(now: Scrape, earlier: Scrape) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """How every aura_ counter and histogram count of this runtime moved since ``earlier``: only those that moved."""
    names = sorted({name for name, _ in now.values if name.startswith("aura_") and name not in PER_PROCESS
                    and (name.endswith("_total") or name.endswith("_seconds_count"))})
    return {name: moved for name in names if (moved := now.deltas(earlier, name))}


# -- the exact moves of an approved and a rejected session ----------------------------------------------
async def test_metrics_parse_and_move_exactly_as_one_session_is_approved_and_another_rejected(
    server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        start = await scrape(client)
        assert start.families["aura_sessions_started"].type == "counter"
        assert start.families["aura_approval_wait_seconds"].type == "histogram"
        assert start.families["aura_sessions_live"].type == "gauge"
        approved_frames = await hitl_session(client, "approve")
        approved = await scrape(client)
        rejected_frames = await hitl_session(client, "reject")
        rejected = await scrape(client)
        text = (await client.get("/metrics")).text

    commits = approved.delta(start, "aura_log_commit_seconds_count")
    assert commits >= 1  # group commit: a round carries many events
    assert counters(approved, start) == {
        "aura_approval_decisions_total": {labels(outcome="approved"): 1},
        "aura_approval_wait_seconds_count": {labels(): 1},
        "aura_hitl_sweeps_total": {labels(): approved.delta(start, "aura_hitl_sweeps_total")},
        "aura_log_commit_seconds_count": {labels(): commits},
        "aura_log_events_written_total": {labels(): len(events(approved_frames))},
        "aura_session_transitions_total": {labels(trigger="start_execution"): 1,
                                           labels(trigger="request_approval"): 1,
                                           labels(trigger="approve"): 1, labels(trigger="finish"): 1},
        "aura_sessions_ended_total": {labels(state="done", reason="none"): 1},
        "aura_sessions_started_total": {labels(): 1},
        "aura_sse_heartbeats_sent_total": {labels(): heartbeats(approved_frames)},
        "aura_tool_call_duration_seconds_count": {labels(tool="send_email"): 1},
        "aura_tool_calls_total": {labels(tool="send_email", outcome="completed"): 1},
    }
    assert len(events(approved_frames)) == events(approved_frames)[-1].seq  # every event of the log, once

    commits = rejected.delta(approved, "aura_log_commit_seconds_count")
    assert counters(rejected, approved) == {
        "aura_approval_decisions_total": {labels(outcome="rejected"): 1},
        "aura_approval_wait_seconds_count": {labels(): 1},
        "aura_hitl_sweeps_total": {labels(): rejected.delta(approved, "aura_hitl_sweeps_total")},
        "aura_log_commit_seconds_count": {labels(): commits},
        "aura_log_events_written_total": {labels(): len(events(rejected_frames))},
        "aura_session_transitions_total": {labels(trigger="start_execution"): 1,
                                           labels(trigger="request_approval"): 1, labels(trigger="reject"): 1},
        "aura_sessions_ended_total": {labels(state="aborted", reason="rejected"): 1},
        "aura_sessions_started_total": {labels(): 1},
        "aura_sse_heartbeats_sent_total": {labels(): heartbeats(rejected_frames)},
    }  # no tool call: a rejected send_email never runs
    assert rejected.value("aura_sessions_live", state="awaiting_approval") == 0
    assert rejected.value("aura_leases_held") == 0  # both ended and left the registry

    # No label names a tenant, a user or a session: none of their values is a label value.
    session_id = approved_frames[0].session_id
    label_values = {value for family in text_string_to_metric_families(text)
                    for sample in family.samples for value in sample.labels.values()}
    assert not {TENANT, session_id, "kim@example.com"} & label_values
    assert session_id not in text and "kim@example.com" not in text


# -- a decision the sweep found -----------------------------------------------------------------------------
async def test_a_decision_whose_publish_was_lost_is_counted_as_found_by_the_sweep(
    server: LiveServer, private_redis: Redis
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        before = await scrape(client)
        async with open_stream(client, EMAIL_PROMPT, headers=auth_headers("1", TENANT)) as stream:
            hitl = await stream.until("hitl")
            rid = hitl.body["requestId"]
            record = await stored_request(private_redis, rid)  # main-service's write, minus the PUBLISH
            record.update(status="approved", approvedBy="1", approvedAt=int(time.time() * 1000))
            await private_redis.set(f"hitl:request:{rid}", json.dumps(record), ex=1800)
            rest = await stream.rest()
        assert rest[-1].is_done
        after = await scrape(client)

    assert after.delta(before, "aura_hitl_sweep_decisions_total") == 1
    assert after.delta(before, "aura_hitl_sweeps_total") >= 1
    assert after.deltas(before, "aura_approval_decisions_total") == {labels(outcome="approved"): 1}
    assert after.deltas(before, "aura_tool_calls_total") == {labels(tool="send_email", outcome="completed"): 1}


# -- Redis away ------------------------------------------------------------------------------------------------
async def test_redis_errors_show_by_operation_while_redis_is_away(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/aura/health")).status_code == 503
        before = await scrape(client)
        assert (await client.get("/aura/health")).status_code == 503
        first = await scrape(client)  # /metrics answers all the same
        # the readiness check that just failed (a delta: the counter is per process, DECISIONS #61)
        assert first.delta(before, "aura_redis_errors_total", operation="role") >= 1

        async def heartbeat_failed_again() -> bool:
            return (await scrape(client)).delta(first, "aura_redis_errors_total", operation="heartbeat") >= 1

        await wait_until(heartbeat_failed_again, 15, "a failed heartbeat")  # a lease round every second


# -- switched off -----------------------------------------------------------------------------------------------
async def test_aura_metrics_false_makes_metrics_a_404_like_any_unknown_route(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(metrics=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get("/metrics")
        unknown = await client.get("/no-such-route")
        health = await client.get("/health")
    assert response.status_code == 404 and unknown.status_code == 404
    body, other = response.json(), unknown.json()
    assert body["message"] == "No route for GET /metrics"
    assert {k: v for k, v in body.items() if k not in ("message", "timestamp")} == {
        k: v for k, v in other.items() if k not in ("message", "timestamp")}
    assert health.status_code == 200  # the rest of the app is there
