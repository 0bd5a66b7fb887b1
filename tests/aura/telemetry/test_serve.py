"""``aura serve`` as operators run it, with a real redis-server: JSON log lines, traces configured by
the OTEL_* variables and sent over OTLP/HTTP, and no extra installed at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import open_stream
from tests.support.auth import SECRET, auth_headers
from tests.support.otlp import OtlpReceiver
from tests.support.process_server import AuraProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

MARKER = "zebra-prompt-7731"  # in the prompt: no log line may carry it
PROMPT = f"Send an email to kim@example.com saying the release is ready, {MARKER}"
GATEWAY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"


async def approved_session(server: AuraProcess, headers: dict[str, str]) -> tuple[str, str]:
    """The HITL session of the rule-based planner, approved through Aura's own API; its session and request ids."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, PROMPT, headers=headers) as stream:
            hitl = await stream.until("hitl")
            request_id = hitl.body["requestId"]
            approval = await client.post(f"/aura/hitl/approve/{request_id}", json={"userId": "1"},
                                         headers={**auth_headers(), "X-User-ID": "1"})
            assert approval.status_code == 200, approval.text
            frames = await stream.rest()
    assert frames[-1].is_done and [f.body["to"] for f in stream.frames if f.type == "state"][-1] == "done"
    return hitl.body["sessionId"], request_id


def stopped(server: AuraProcess) -> str:
    server.terminate()
    return server.wait(timeout=20)


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is one JSON object
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
    return lines


def assert_no_secret(stderr: str, headers: dict[str, str]) -> None:
    token = headers["Authorization"].removeprefix("Bearer ")
    for secret in (token, SECRET, MARKER):
        assert secret not in stderr


async def test_json_lines_of_a_session_carry_its_ids_and_never_a_token(private_redis_server: RedisServer) -> None:
    server = AuraProcess(private_redis_server.url, AURA_LOG_LEVEL="info", AURA_LOG_FORMAT="json",
                         OTEL_TRACES_EXPORTER="none").start()
    headers = auth_headers()
    try:
        session_id, request_id = await approved_session(server, headers)
    finally:
        stderr = stopped(server)
    lines = json_lines(stderr)
    assert_no_secret(stderr, headers)
    of_session = [line for line in lines if line.get("sessionId") == session_id]
    assert [line["message"] for line in of_session] == [
        f"session {session_id}: run started in state planning",
        f"session {session_id}: waiting for a decision on {request_id} (send_email)",
        f"session {session_id}: {request_id} was approved",
        f"session {session_id}: run ended done",
    ]
    assert all(line["tenantId"] == "1" and line["level"] == "INFO" for line in of_session)
    assert [line.get("requestId") for line in of_session] == [None, request_id, request_id, None]
    assert not any("trace_id" in line for line in lines)  # no tracing, no trace ids
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any(f'"POST /aura/hitl/approve/{request_id} HTTP/1.1" 200' in message for message in access), access


async def test_the_otel_variables_send_the_sessions_spans_over_otlp_and_log_lines_name_them(
    private_redis_server: RedisServer,
) -> None:
    with OtlpReceiver() as collector:
        server = AuraProcess(
            private_redis_server.url, AURA_LOG_LEVEL="info", AURA_LOG_FORMAT="json",
            OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_SERVICE_NAME="aura-under-test",
            OTEL_BSP_SCHEDULE_DELAY="50",
        ).start()
        headers = auth_headers(traceparent=f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01")
        try:
            session_id, request_id = await approved_session(server, headers)
            received = collector.wait_for("aura.session.run")
        finally:
            stderr = stopped(server)
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    ours = [span for span in received if span.trace_id == GATEWAY_TRACE]
    by_name = {span.name: span for span in ours}
    assert {"aura.session.run", "aura.planner.plan", "aura.approval.wait", "aura.tool.call",
            "aura.planner.answer"} <= set(by_name)
    run = by_name["aura.session.run"]
    assert run.service == "aura-under-test" and run.parent_span_id == GATEWAY_SPAN
    assert run.attributes["aura.session.id"] == session_id
    assert by_name["aura.approval.wait"].attributes["aura.hitl.request_id"] == request_id

    lines = json_lines(stderr)
    assert_no_secret(stderr, headers)
    of_session = {line["message"]: line for line in lines if line.get("sessionId") == session_id}
    assert {line["trace_id"] for line in of_session.values()} == {GATEWAY_TRACE}
    waiting = of_session[f"session {session_id}: waiting for a decision on {request_id} (send_email)"]
    assert waiting["span_id"] == by_name["aura.approval.wait"].span_id
    assert of_session[f"session {session_id}: run started in state planning"]["span_id"] == run.span_id


async def test_aura_serves_without_the_otel_extra_and_says_so_when_traces_are_asked_for(
    private_redis_server: RedisServer, tmp_path: Path
) -> None:
    """The extra is optional: with opentelemetry not importable, the same session runs, untraced."""
    blocked = tmp_path / "opentelemetry"
    blocked.mkdir()
    (blocked / "__init__.py").write_text('raise ImportError("not installed (blocked by the test)")\n')
    server = AuraProcess(private_redis_server.url, PYTHONPATH=str(tmp_path), AURA_LOG_LEVEL="info",
                         OTEL_TRACES_EXPORTER="otlp").start()
    headers = auth_headers(traceparent=f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01")
    try:
        session_id, _ = await approved_session(server, headers)
    finally:
        stderr = stopped(server)
    assert ("WARNING aura.telemetry.tracing: OTEL_TRACES_EXPORTER is set but the otel extra is not installed "
            "(pip install 'aura[otel]'): no traces") in stderr
    assert f"INFO aura.agent.runner: session {session_id}: run ended done" in stderr  # the text format, as before
