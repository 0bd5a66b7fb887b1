"""Liveness, readiness and info: public, and honest about Redis (CONTRACT §2.5, §7 item 5)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from aura.config import StreamAuthPolicy
from tests.support.auth import approver_headers, auth_headers
from tests.support.envelopes import assert_error_envelope, json_object
from tests.support.live_server import LiveServer
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

READINESS_PATHS = ["/aura/health", "/aura/agents/health"]
json_body = json_object


async def ready(client: httpx.AsyncClient, path: str = "/aura/health", *, within: float = 10.0) -> httpx.Response:
    """Readiness once the HITL subscriber had its moment to connect after start-up."""
    answers: list[httpx.Response] = []

    async def up() -> bool:
        answers.append(await client.get(path))
        return answers[-1].status_code == 200

    await wait_until(up, within, lambda: f"{path} to be ready (last: {answers[-1].status_code} {answers[-1].text})",
                     interval=0.05)
    return answers[-1]


async def test_liveness_is_public_200_up(client: httpx.AsyncClient) -> None:
    """No credentials at all: 200 with the liveness body, and nothing asking for authentication."""
    response = await client.get("/health", headers={})
    assert response.status_code == 200
    assert json_body(response) == {"status": "UP", "service": "aura-platform"}
    assert "www-authenticate" not in response.headers
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("path", READINESS_PATHS)
async def test_s2_5_readiness_is_public_200_up_with_external_redis(client: httpx.AsyncClient, path: str) -> None:
    response = await ready(client, path)
    assert response.status_code == 200, response.text
    body = json_body(response)
    assert body["status"] == "UP"
    assert body["checks"]["redis"] == {"status": "UP", "mode": "standalone"}
    assert body["checks"]["hitlSubscriber"]["status"] == "UP"
    assert "sessions" not in body  # the public answer says nothing about the sessions


@pytest.mark.parametrize("path", READINESS_PATHS)
async def test_readiness_shows_session_counts_only_to_a_caller_with_a_valid_token(
    client: httpx.AsyncClient, path: str
) -> None:
    await ready(client, path)
    body = json_body(await client.get(path, headers=auth_headers()))
    assert set(body["sessions"]) >= {"live", "awaitingApproval", "driven", "started"}
    assert all(isinstance(v, int) and v >= 0 for v in body["sessions"].values())
    for headers in ({"Authorization": auth_headers()["Authorization"]},  # no X-Tenant-ID
                    auth_headers(tenant="2") | {"X-Tenant-ID": "1"},  # the token of another tenant
                    {"Authorization": "Bearer garbage", "X-Tenant-ID": "1"}):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        assert "sessions" not in json_body(response)


@pytest.mark.parametrize("path", ["/health", *READINESS_PATHS, "/aura/info"])
async def test_s2_5_health_endpoints_ignore_bad_credentials(client: httpx.AsyncClient, path: str) -> None:
    """Public means public: a stale token or a foreign tenant must not turn health into a 401/403."""
    headers = {"Authorization": "Bearer garbage", "X-Tenant-ID": "nope", "X-User-ID": "x"}
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert json_body(response)["status"] == "UP"
    assert "sessions" not in json_body(response)


async def test_info_is_public_with_tools_and_stream_auth_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/aura/info")
    assert response.status_code == 200
    body = json_body(response)
    assert body["status"] == "UP"
    assert isinstance(body["tools"], list) and {"send_email", "list_open_tasks"} <= set(body["tools"])
    assert all(isinstance(t, str) for t in body["tools"])
    assert body["stream"]["auth"] == "strict"
    assert body["stream"]["path"] == "/aura/test/stream"
    assert "POST" in body["stream"]["methods"]
    assert body["redis"]["mode"] == "standalone"


async def test_info_reports_the_compat_policy(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        body = json_body(await c.get("/aura/info"))
    assert body["stream"]["auth"] == "compat"


async def test_redis_down_readiness_is_503_degraded_fast_while_liveness_stays_200(
    start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_seconds=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        for path in READINESS_PATHS:
            started = time.monotonic()
            response = await c.get(path)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert elapsed < 3.0
            body = json_body(response)
            assert body["status"] == "DEGRADED"
            assert body["checks"]["redis"]["status"] == "DOWN"
            assert body["checks"]["redis"]["mode"] == "standalone"
        started = time.monotonic()
        live = await c.get("/health")
        assert live.status_code == 200 and json_body(live)["status"] == "UP"
        # Liveness never waits on Redis: well under the readiness bound even on a loaded machine.
        assert time.monotonic() - started < 3.0


async def test_redis_down_hitl_api_is_an_envelope_not_a_hang(start_server: Callable[..., LiveServer]) -> None:
    """With Redis gone, the approval API answers with an error envelope instead of hanging."""
    server = start_server(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_seconds=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        started = time.monotonic()
        response = await c.post("/aura/hitl/approve/req_x", json={"userId": "1"}, headers=approver_headers())
        elapsed = time.monotonic() - started
    # A hang would last the client's 10 s; the 0.5 s Redis timeout leaves room for a loaded machine.
    assert elapsed < 5.0, elapsed
    assert_error_envelope(response, 503, "E5000")


async def test_embedded_backend_reports_mode_embedded_and_up(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(redis_url=None)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        for path in READINESS_PATHS:
            response = await ready(c, path)
            assert response.status_code == 200, response.text
            body = json_body(response)
            assert body["status"] == "UP"
            assert body["checks"]["redis"] == {"status": "UP", "mode": "embedded"}
        assert json_body(await c.get("/aura/info"))["redis"]["mode"] == "embedded"
