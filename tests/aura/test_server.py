"""`aura serve` as a real process: the embedded default, and a clean SIGTERM with open streams."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, auth_headers, open_stream
from tests.support.redis_server import free_port

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def embedded_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "AURA_", "REDIS_"))}
    env.update(JWT_SECRET=SECRET, AURA_PORT=str(port), AURA_SHUTDOWN_GRACE_SECONDS="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "aura", "serve"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"aura serve did not start: {process.communicate()[1]}")
        time.sleep(0.1)
    yield process, url
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


async def test_embedded_default_runs_a_whole_hitl_session(embedded_server):
    process, url = embedded_server
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        health = (await client.get("/aura/health")).json()
        assert health["status"] == "UP" and health["checks"]["redis"]["mode"] == "embedded"
        async with open_stream(client, "Send an email to kim@example.com saying hi") as stream:
            hitl = await stream.until("hitl")
            approval = await client.post(
                f"/aura/hitl/approve/{hitl.body['requestId']}",
                headers=auth_headers(**{"X-User-ID": "1"}),
                json={"userId": "1"},
            )
            assert approval.status_code == 200, approval.text
            rest = await stream.rest()
    completed = [f for f in rest if f.type == "tool_execution" and f.body["status"] == "completed"]
    assert len(completed) == 1 and "kim@example.com" in completed[0].body["result"]
    assert rest[-2].body["to"] == "done" and rest[-1].is_done


async def test_sigterm_ends_open_streams_promptly_without_done_then_exits(embedded_server):
    """On SIGTERM the stream ends (the client reconnects elsewhere); the session is not aborted."""
    process, url = embedded_server
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with open_stream(client, "Send an email to kim@example.com saying hi") as stream:
            await stream.until("hitl")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            tail = []
            with pytest.raises(StopAsyncIteration):
                while True:
                    tail.append(await stream.next_frame())
    assert tail[-1].raw == b": server draining, reconnect with Last-Event-ID id:-"
    assert not any(f.is_done or f.type in ("error", "state") for f in tail)
    # uvicorn re-raises the captured SIGTERM after a clean shutdown, hence -15.
    assert process.wait(timeout=10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 8
    stderr = process.communicate()[1]
    assert "Application shutdown complete." in stderr
    assert "embedded in-process Redis" in stderr
