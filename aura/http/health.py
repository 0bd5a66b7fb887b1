"""Liveness, readiness and info (CONTRACT §7 item 5). All public; session counts only for a caller with a token."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import Authenticator
from aura.errors import ApiError
from aura.http.envelope import envelope_response
from aura.runtime import Runtime

SERVICE_NAME = "aura-platform"


def _version() -> str:
    try:
        return version("aura")
    except PackageNotFoundError:
        return "0+unknown"


async def liveness(request: Request) -> Response:
    """``GET /health``: the process answers. Does not look at Redis, so an outage never restarts Aura."""
    return envelope_response(200, {"status": "UP", "service": SERVICE_NAME})


class HealthEndpoints:
    """Readiness and info: what the runtime says about Redis and the subscriber (and, to a caller
    with a valid token, how many sessions this process holds)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._authenticator = Authenticator(runtime.services.verifier)

    def _authenticated(self, request: Request) -> bool:
        """A valid token for the X-Tenant-ID sent; anything less is simply the public answer, never a 401."""
        if "authorization" not in request.headers:
            return False
        try:
            self._authenticator.caller(request.headers)
        except ApiError:
            return False
        return True

    async def readiness(self, request: Request) -> Response:
        """``GET /aura/health``: 200 UP when Redis takes writes, the heartbeat is current and the
        subscriber listens, else 503 DEGRADED (a demoted primary answers pings, but not writes).

        The public body says nothing about the sessions: their counts (``sessions``) are added only
        for a caller whose bearer token is valid for its ``X-Tenant-ID``, as on the session API."""
        runtime = self._runtime
        redis_up = await runtime.redis_ok()
        heartbeat_up = runtime.heartbeat_ok
        subscriber_up = runtime.hub.subscribed.is_set()
        healthy = redis_up and heartbeat_up and subscriber_up
        body: dict[str, Any] = {
            "status": "UP" if healthy else "DEGRADED",
            "service": SERVICE_NAME,
            "checks": {
                "redis": {"status": "UP" if redis_up else "DOWN", "mode": runtime.services.redis.mode},
                "heartbeat": {"status": "UP" if heartbeat_up else "DOWN"},
                "hitlSubscriber": {"status": "UP" if subscriber_up else "DOWN"},
            },
        }
        if self._authenticated(request):
            body["sessions"] = runtime.counts()
        return envelope_response(200 if healthy else 503, body)

    async def info(self, request: Request) -> Response:
        services = self._runtime.services
        settings = services.settings
        body = {
            "status": "UP",
            "service": SERVICE_NAME,
            "version": _version(),
            "stream": {"path": "/aura/test/stream", "methods": ["POST", "GET"], "auth": settings.stream_auth.value},
            "hitl": {"timeoutSeconds": settings.hitl_timeout_seconds, "heartbeatSeconds": settings.heartbeat_seconds},
            "redis": {"mode": services.redis.mode},
            "tools": services.tools.names(),
        }
        return envelope_response(200, body)
