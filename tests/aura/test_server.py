"""`aura serve` as a real process: the embedded default, and a clean SIGTERM with open streams."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import open_stream
from tests.support.auth import approver_headers
from tests.support.process_server import AuraProcess
from tests.support.sse import Frame

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # `aura serve` as a real subprocess


@pytest.fixture
def embedded_server() -> Iterator[AuraProcess]:
    """No REDIS_URL: the embedded in-process Redis; info logs, to see uvicorn's shutdown line."""
    server = AuraProcess(None, AURA_LOG_LEVEL="info", AURA_SHUTDOWN_GRACE_SECONDS="3").start()
    yield server
    server.kill()


async def test_embedded_default_runs_a_whole_hitl_session(embedded_server: AuraProcess) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.url, timeout=30) as client:
        health = (await client.get("/aura/health")).json()
        assert health["status"] == "UP" and health["checks"]["redis"]["mode"] == "embedded"
        async with open_stream(client, "Send an email to kim@example.com saying hi") as stream:
            hitl = await stream.until("hitl")
            approval = await client.post(
                f"/aura/hitl/approve/{hitl.body['requestId']}",
                headers=approver_headers(),
                json={"userId": "1"},
            )
            assert approval.status_code == 200, approval.text
            rest = await stream.rest()
    completed = [f for f in rest if f.type == "tool_execution" and f.body["status"] == "completed"]
    assert len(completed) == 1 and "kim@example.com" in completed[0].body["result"]
    assert rest[-2].body["to"] == "done" and rest[-1].is_done


async def test_sigterm_ends_open_streams_promptly_without_done_then_exits(embedded_server: AuraProcess) -> None:
    """On SIGTERM the stream ends (the client reconnects elsewhere); the session is not aborted."""
    async with httpx.AsyncClient(base_url=embedded_server.url, timeout=30) as client:
        async with open_stream(client, "Send an email to kim@example.com saying hi") as stream:
            await stream.until("hitl")
            started = time.monotonic()
            embedded_server.terminate()
            tail: list[Frame] = []
            with pytest.raises(StopAsyncIteration):
                while True:
                    tail.append(await stream.next_frame())
    assert tail[-1].raw == b": server draining, reconnect with Last-Event-ID id:-"
    assert not any(f.is_done or f.type in ("error", "state") for f in tail)
    stderr = embedded_server.wait(timeout=10)
    assert embedded_server.process is not None
    # uvicorn re-raises the captured SIGTERM after a clean shutdown, hence -15.
    assert embedded_server.process.returncode in (0, -signal.SIGTERM), stderr
    assert time.monotonic() - started < 8
    assert "Application shutdown complete." in stderr
    assert "embedded in-process Redis" in stderr
