"""The stream through a real nginx with the gateway's path mapping (CONTRACT §1.2, §3.2-3.3, §3.6-3.7).

nginx forwards ``/api/aura/**`` to ``/aura/**`` on a live Aura (tests/support/nginx.py).
Frames are read from the raw byte stream in small pieces and every one goes through the
strict parser, so a proxy that re-frames, buffers, re-encodes or drops bytes fails here.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import auth_headers
from tests.support.live_server import LiveServer
from tests.support.main_service import decide
from tests.support.nginx import NginxProxy, require_nginx
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.anyio

KOREAN_PROMPT = "이메일을 kim@example.com 에게 보내 주세요"
PIECE = 7  # bytes per read: frames and \uXXXX escapes are split across reads on purpose


@pytest.fixture(scope="module")
def nginx(aura: LiveServer) -> Iterator[NginxProxy]:
    require_nginx()
    proxy = NginxProxy(aura.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def start_nginx() -> Iterator[Callable[[int], NginxProxy]]:
    started: list[NginxProxy] = []

    def start(upstream_port: int) -> NginxProxy:
        require_nginx()
        proxy = NginxProxy(upstream_port)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
async def proxied(nginx: NginxProxy) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as c:
        yield c


class PieceStream(SseStream):
    """``SseStream`` fed by ``aiter_raw`` in ``PIECE``-byte pieces, each frame's arrival time noted."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames: list[Frame] = []
        self._iter = response.aiter_raw(chunk_size=PIECE)
        self._buffer = b""
        self.arrivals: list[float] = []

    async def next_frame(self) -> Frame:
        frame = await super().next_frame()
        self.arrivals.append(time.monotonic())
        return frame


def _stream_via_gateway_path(
    client: httpx.AsyncClient, prompt: str
) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
    hdrs = {"Accept": "text/event-stream", **auth_headers()}
    body = {"prompt": prompt, "context": {"activeApp": "mail"}}
    return client.stream("POST", "/api/aura/test/stream", json=body, headers=hdrs)


def _assert_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["connection"] == "keep-alive"
    assert "content-encoding" not in response.headers


async def test_korean_hitl_approve_and_finish_through_nginx(proxied: httpx.AsyncClient) -> None:
    async with _stream_via_gateway_path(proxied, KOREAN_PROMPT) as response:
        _assert_sse_headers(response)
        stream = PieceStream(response)
        hitl = await stream.until("hitl")

        # ASCII on the wire (parse_frame decoded it as ASCII), Korean intact after JSON decoding.
        escaped = json.dumps(KOREAN_PROMPT, ensure_ascii=True)[1:-1].encode("ascii")
        assert escaped in hitl.raw
        assert hitl.body["params"]["body"] == KOREAN_PROMPT
        assert hitl.body["actionType"] == "send_email"
        assert hitl.body["requiresApproval"] is True
        request_id = hitl.body["requestId"]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", request_id), request_id

        # Approve through the same proxy (main-service's API, which Aura also serves).
        approval = await proxied.post(
            f"/api/aura/hitl/approve/{request_id}",
            json={"userId": "1"},
            headers=auth_headers(**{"X-User-ID": "1"}),
        )
        assert approval.status_code == 200, approval.text
        assert approval.headers["content-type"] == "application/json"
        assert approval.json()["data"]["status"] == "approved"

        rest = await stream.rest()

    events = [f for f in stream.frames if f.comment is None or f.data is not None]
    types = ["[DONE]" if f.is_done else f.type for f in events]
    assert types.index("hitl") < types.index("tool_execution")
    assert types[-3:] == ["content", "state", "[DONE]"]
    assert rest[-2].body["to"] == "done"
    assert rest[-1].raw == b"data: [DONE]"
    sent = [f for f in rest if f.type == "tool_execution" and f.body["status"] == "completed"]
    assert sent and sent[0].body["tool"] == "send_email"

    # Every event carries its own id, `<session>.<n>` with n counting from 1 (CONTRACT §3.6).
    assert events[0].id is not None
    session_id = events[0].id.split(".")[0]
    assert [f.id for f in events[:-1]] == [f"{session_id}.{n}" for n in range(1, len(events))]


async def test_hitl_and_heartbeats_arrive_unbuffered_through_nginx(
    start_server: Callable[..., LiveServer], start_nginx: Callable[[int], NginxProxy], redis: Redis
) -> None:
    server = start_server(heartbeat_seconds=0.3)
    proxy = start_nginx(server.port)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as c:
        started = time.monotonic()
        prompt = "Send an email to kim@example.com saying the release is ready"
        async with _stream_via_gateway_path(c, prompt) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            stream = PieceStream(response)
            hitl = await stream.until("hitl", timeout=2)
            hitl_at = stream.arrivals[-1]
            assert hitl_at - started < 2
            request_id = hitl.body["requestId"]

            # Nobody has decided: the session is still waiting while the frames flow.
            record = json.loads(await redis.get(f"hitl:request:{request_id}") or "{}")
            assert record["status"] == "pending"

            heartbeats: list[float] = []
            with anyio.fail_after(5):
                while len(heartbeats) < 4:
                    frame = await stream.next_frame()
                    if frame.data is None:
                        assert frame.raw == b": keepalive id:-"
                        heartbeats.append(stream.arrivals[-1])
                    else:
                        assert frame.type == "hitl_request", frame.raw
            # They trickle in one by one (~0.3 s apart), not in a burst when a buffer fills or closes.
            gaps = [b - a for a, b in zip([hitl_at, *heartbeats], heartbeats)]
            assert all(gap > 0.1 for gap in gaps), gaps
            assert heartbeats[-1] - hitl_at >= 0.9, gaps
            assert json.loads(await redis.get(f"hitl:request:{request_id}") or "{}")["status"] == "pending"

            await decide(redis, request_id, approve=False, reason="not now")
            rest = await stream.rest()
    assert [f.type for f in rest if f.type == "error"] == ["error"]
    assert rest[-1].is_done


async def test_error_envelope_passes_through_nginx_unchanged(proxied: httpx.AsyncClient, aura: LiveServer) -> None:
    headers = {
        "Accept": "text/event-stream",
        "Authorization": auth_headers()["Authorization"],
        "X-Trace-Id": "trace-nginx-1",
        "X-Gateway-Request-Id": "gw-req-1",
    }
    body = {"prompt": KOREAN_PROMPT}
    via_nginx = await proxied.post("/api/aura/test/stream", json=body, headers=headers)
    async with httpx.AsyncClient(base_url=aura.url, timeout=30) as direct_client:
        direct = await direct_client.post("/aura/test/stream", json=body, headers=headers)

    assert via_nginx.status_code == direct.status_code == 400
    assert via_nginx.headers["content-type"] == direct.headers["content-type"] == "application/json"
    assert via_nginx.headers["content-length"] == direct.headers["content-length"]
    payload = json.loads(via_nginx.content)
    assert list(payload) == ["status", "message", "errorCode", "timestamp", "success", "traceId", "gatewayRequestId"]
    assert payload["status"] == "ERROR" and payload["success"] is False
    assert payload["errorCode"] == "E2006"
    assert payload["message"] == "X-Tenant-ID header is required"
    assert payload["traceId"] == "trace-nginx-1" and payload["gatewayRequestId"] == "gw-req-1"
    # Byte for byte what Aura sends directly, apart from the timestamp.
    stamp = re.compile(rb'"timestamp":"[^"]*"')
    assert stamp.sub(b"", via_nginx.content) == stamp.sub(b"", direct.content)
