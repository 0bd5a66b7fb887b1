"""A session's trace, through a real uvicorn and redis-server, with the model and DWP mocked (respx).

The spans go to an in-memory exporter: run → planner (→ LLM call), approval wait, tool, answer
(→ LLM call), under the gateway's traceparent; the headers the mocked endpoints received name the
tool's and the LLM calls' spans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from aura.auth import Principal
from aura.session.events import EventType
from aura.session.session import SessionRequest
from aura.storage import keys
from aura.telemetry import tracing
from aura.telemetry.tracing import TraceContext
from tests.conftest import auth_headers, open_stream
from tests.support import main_service
from tests.support.auth import SECRET
from tests.support.live_server import LiveServer
from tests.support.llm import GATEWAY, LLM, MAIL_TOOL, text_stream, tool_call_stream
from tests.support.redis_server import RedisServer
from tests.support.sessions import driver_for
from tests.support.sse import SseStream

pytestmark = pytest.mark.anyio

GATEWAY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"
PROMPT = "Mail kim about the release, codeword zebra-prompt-41"


@pytest.fixture
def llm_server(start_server: Callable[..., LiveServer], tmp_path: Path, private_redis_server: RedisServer) -> LiveServer:
    """On the module's own Redis: no other test's server adopts its sessions, and it adopts none of
    theirs (an adopted run would add spans and use up the mocked model's answers)."""
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [MAIL_TOOL]}))
    return start_server(
        llm_base_url="https://llm.test/v1", llm_model="test-model", llm_api_key="sk-test-key-8c1d", llm_max_retries=0,
        llm_timeout_seconds=5, dwp_gateway_url=GATEWAY, tools_file=str(tools), redis_url=private_redis_server.url,
    )


def ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id), trace.format_span_id(span.context.span_id)


def named(request: httpx.Request) -> tuple[str, str]:
    """The trace and parent span ids of a request's ``traceparent``."""
    version, trace_id, span_id, _flags = request.headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


def parent_of(span: ReadableSpan) -> str | None:
    return trace.format_span_id(span.parent.span_id) if span.parent is not None else None


def finished_run(exporter: InMemorySpanExporter, session_id: str | None = None) -> Sequence[ReadableSpan]:
    """The spans of one session's trace, once its run span has ended (just after the stream's [DONE]).

    The tracer is the process's, so other in-process servers' spans may be there too: only the trace
    of the run of ``session_id`` (of the one run there is, when None) is returned."""
    def runs() -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.name == "aura.session.run"
                and (session_id is None or (s.attributes or {}).get("aura.session.id") == session_id)]

    deadline = time.monotonic() + 10
    while not runs():
        assert time.monotonic() < deadline, [s.name for s in exporter.get_finished_spans()]
        time.sleep(0.02)
    (run,) = runs()
    trace_id = ids(run)[0]
    return [s for s in exporter.get_finished_spans() if ids(s)[0] == trace_id]


async def approved_session(server: LiveServer, redis: Redis, headers: dict[str, str]) -> tuple[str, str]:
    """Run the HITL session to its end, approving as main-service does; its session and request ids."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, PROMPT, headers=headers) as stream:
            hitl = await stream.until("hitl")
            await main_service.decide(redis, hitl.body["requestId"], approve=True)
            frames = await stream.rest()
    assert frames[-1].is_done
    states = [f.body["to"] for f in stream.frames if f.type == "state"]
    assert states[-1] == "done", states
    return hitl.body["sessionId"], hitl.body["requestId"]


def mock_model_and_dwp(mocked: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    llm = mocked.post(LLM).mock(side_effect=[
        tool_call_stream("send_dwp_mail", '{"to":"kim@example.com","subject":"Release"}', say="I will send the mail."),
        text_stream("Mail sent."),
    ])
    dwp = mocked.post(f"{GATEWAY}/api/mail/send").mock(return_value=httpx.Response(200, json={"status": "SUCCESS"}))
    return llm, dwp


async def test_a_sessions_spans_hang_under_the_gateways_trace_and_name_the_calls_they_made(
    mocked: respx.MockRouter, llm_server: LiveServer, private_redis: Redis, spans: InMemorySpanExporter
) -> None:
    llm, dwp = mock_model_and_dwp(mocked)
    headers = auth_headers(sub="5", tenant="1", **{"X-User-ID": "5",
                                                    "traceparent": f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01"})
    session_id, request_id = await approved_session(llm_server, private_redis, headers)

    finished = finished_run(spans, session_id)
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    (run,) = by_name["aura.session.run"]
    (plan,) = by_name["aura.planner.plan"]
    (wait,) = by_name["aura.approval.wait"]
    (tool,) = by_name["aura.tool.call"]
    (answer,) = by_name["aura.planner.answer"]
    chats = sorted(by_name["chat test-model"], key=lambda s: s.start_time or 0)
    assert len(chats) == 2

    # One trace, the gateway's; the run is the child of the gateway's span, everything else the run's.
    assert {ids(span)[0] for span in finished} == {GATEWAY_TRACE}
    assert parent_of(run) == GATEWAY_SPAN
    run_id = ids(run)[1]
    assert [parent_of(s) for s in (plan, wait, tool, answer)] == [run_id] * 4
    assert [parent_of(chat) for chat in chats] == [ids(plan)[1], ids(answer)[1]]
    assert all(chat.kind is SpanKind.CLIENT for chat in chats)
    starts = [s.start_time or 0 for s in (plan, wait, tool, answer)]
    assert starts == sorted(starts)

    # What each says: ids, names, outcomes.
    assert run.attributes is not None and dict(run.attributes) == {
        "aura.session.id": session_id, "aura.tenant.id": "1", "aura.session.adopted": False,
        "aura.session.state": "done",
    }
    assert wait.attributes is not None and dict(wait.attributes) == {
        "aura.hitl.request_id": request_id, "aura.tool.name": "send_dwp_mail", "aura.approval.resumed": False,
        "aura.approval.outcome": "approved",
    }
    assert tool.attributes is not None and tool.attributes["aura.tool.name"] == "send_dwp_mail"
    assert chats[0].attributes is not None and {k: chats[0].attributes[k] for k in (
        "gen_ai.operation.name", "gen_ai.request.model", "server.address", "http.response.status_code",
        "aura.llm.finish_reason", "aura.llm.tool_calls")} == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "test-model", "server.address": "llm.test",
        "http.response.status_code": 200, "aura.llm.finish_reason": "tool_calls", "aura.llm.tool_calls": 1,
    }
    transitions = [(dict(e.attributes or {})["aura.session.from"], dict(e.attributes or {})["aura.session.to"])
                   for s in finished for e in s.events if e.name == "aura.session.transition"]
    assert sorted(transitions) == sorted([("planning", "executing"), ("executing", "awaiting_approval"),
                                          ("awaiting_approval", "executing"), ("executing", "done")])

    # The calls carried the traceparent of the span that made them.
    assert named(dwp.calls.last.request) == ids(tool)
    assert [named(call.request) for call in llm.calls] == [ids(chat) for chat in chats]

    # No prompt, no token, no key, no model text on any span.
    text = json.dumps([{"attributes": dict(s.attributes or {}), "events": [dict(e.attributes or {}) for e in s.events],
                        "status": s.status.description} for s in finished])
    for secret in ("zebra-prompt-41", headers["Authorization"].split()[1], SECRET, "sk-test-key-8c1d", "Mail sent",
                   "I will send the mail", "kim@example.com"):
        assert secret not in text


async def test_without_a_traceparent_the_run_starts_a_trace_of_its_own(
    mocked: respx.MockRouter, llm_server: LiveServer, private_redis: Redis, spans: InMemorySpanExporter
) -> None:
    mock_model_and_dwp(mocked)
    session_id, _ = await approved_session(llm_server, private_redis, auth_headers())
    finished = finished_run(spans, session_id)
    (run,) = [s for s in finished if s.name == "aura.session.run"]
    assert run.parent is None
    # its calls are in its own trace
    assert {s.name for s in finished} >= {"aura.planner.plan", "aura.approval.wait", "aura.tool.call",
                                          "aura.planner.answer"}


async def test_with_no_otel_configuration_nothing_is_traced_or_sent_and_the_session_runs(
    mocked: respx.MockRouter, llm_server: LiveServer, private_redis: Redis
) -> None:
    assert tracing.configure({"PATH": "/usr/bin"}) is False
    assert not tracing.enabled() and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    llm, dwp = mock_model_and_dwp(mocked)
    headers = auth_headers(**{"traceparent": f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01"})
    await approved_session(llm_server, private_redis, headers)
    requests: list[Any] = [call.request for call in [*llm.calls, *dwp.calls]]
    assert len(requests) == 3 and not any("traceparent" in request.headers for request in requests)


async def test_a_run_that_adopts_a_session_is_a_new_trace_linked_to_the_creating_requests_span(
    start_server: Callable[..., LiveServer], private_redis_server: RedisServer, private_redis: Redis,
    spans: InMemorySpanExporter,
) -> None:
    """DECISIONS #63: the caller's trace context travels in the snapshot to whichever replica adopts."""
    dead = driver_for(private_redis, "dead-instance")
    origin = TraceContext(f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01")
    session = await dead.registry.create(Principal("1", "1"), SessionRequest("Summarize today's open tasks", {},
                                                                             trace_context=origin))
    dead.writer.emit(session, EventType.THOUGHT, {"content": "Analyzing the request...", "thoughtType": "analysis"})
    await dead.writer.sync(session)
    await private_redis.delete(keys.lease(session.id))  # its driver is gone
    server = start_server(lease_seconds=0.6, redis_url=private_redis_server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        headers = {**auth_headers(), "Accept": "text/event-stream"}
        async with client.stream("GET", f"/aura/sessions/{session.id}/events", headers=headers) as response:
            assert response.status_code == 200
            frames = await SseStream(response).rest(timeout=20)
    assert [f.body["to"] for f in frames if f.type == "state"][-1] == "done"
    finished = finished_run(spans, session.id)
    (run,) = [s for s in finished if s.name == "aura.session.run"]
    assert run.parent is None and ids(run)[0] != GATEWAY_TRACE
    assert run.attributes is not None and run.attributes["aura.session.adopted"] is True
    assert run.attributes["aura.session.id"] == session.id
    (link,) = run.links
    assert (trace.format_trace_id(link.context.trace_id), trace.format_span_id(link.context.span_id)) == (
        GATEWAY_TRACE, GATEWAY_SPAN)
    # its planner, tool and answer spans are in the new trace
    assert {s.name for s in finished} >= {"aura.planner.plan", "aura.tool.call", "aura.planner.answer"}
