"""The Starlette application: routes over the runtime's parts, error envelopes and the lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aura.auth import Authenticator
from aura.config import Settings
from aura.errors import ApiError, BadRequest, HttpError, InternalError, MethodNotAllowed, NotFound
from aura.http.console.dev_tokens import DevTokens, dev_tokens_allowed
from aura.http.console.page import ConsolePage
from aura.http.envelope import error_response
from aura.http.follow import SessionAccess
from aura.http.health import HealthEndpoints, liveness
from aura.http.hitl import HitlEndpoints
from aura.http.metrics import MetricsEndpoint
from aura.http.openapi import ApiDescriptionEndpoint
from aura.http.sessions import SessionEndpoints
from aura.http.stream import StreamEndpoint
from aura.http.stream_slots import StreamSlots
from aura.runtime import Runtime

log = logging.getLogger(__name__)


def routes(runtime: Runtime) -> list[BaseRoute]:
    services = runtime.services
    settings = services.settings
    timeout = settings.redis_timeout_seconds
    authenticator = Authenticator(services.verifier)
    access = SessionAccess(
        services.session_store,
        services.feeds,
        redis_timeout_seconds=timeout,
        heartbeat_seconds=settings.heartbeat_seconds,
        send_timeout_seconds=settings.sse_send_timeout_seconds,
        slots=StreamSlots(per_user=settings.max_streams_per_user, per_tenant=settings.max_streams_per_tenant),
        metrics=services.metrics,
    )
    stream = StreamEndpoint(
        authenticator,
        access,
        services.registry.create,
        services.runs.start,
        auth_policy=settings.stream_auth,
        send_timeout_seconds=settings.sse_send_timeout_seconds,
        metrics=services.metrics,
    )
    sessions = SessionEndpoints(authenticator, access, services.session_store, services.live_sessions,
                                redis_timeout_seconds=timeout)
    hitl = HitlEndpoints(authenticator, services.hitl_store, redis_timeout_seconds=timeout)
    health = HealthEndpoints(runtime)
    # Only on the public dev secret (make run): elsewhere the path is a 404 (DECISIONS #69).
    dev_tokens: list[BaseRoute] = (
        [Route("/aura/console/dev-token", DevTokens(services.verifier).mint, methods=["POST"])]
        if dev_tokens_allowed(settings) else []
    )
    # AURA_METRICS=false: no route, so /metrics is a 404 like any unknown path (DECISIONS #59)
    metrics: list[BaseRoute] = (
        [Route("/metrics", MetricsEndpoint(services.metrics).scrape, methods=["GET"])] if settings.metrics else []
    )
    return [
        Route("/aura/test/stream", stream.stream, methods=["POST", "GET"]),
        Route("/aura/sessions", sessions.list_sessions, methods=["GET"]),
        Route("/aura/sessions/{session_id}", sessions.get_session, methods=["GET"]),
        Route("/aura/sessions/{session_id}/events", sessions.session_events, methods=["GET"]),
        Route("/aura/sessions/{session_id}/cancel", sessions.cancel_session, methods=["POST"]),
        Route("/aura/hitl/approve/{request_id}", hitl.approve, methods=["POST"]),
        Route("/aura/hitl/reject/{request_id}", hitl.reject, methods=["POST"]),
        Route("/aura/hitl/requests/{request_id}", hitl.get_request, methods=["GET"]),
        Route("/aura/hitl/signals/{session_id}", hitl.get_signal, methods=["GET"]),
        Route("/aura/health", health.readiness, methods=["GET"]),
        Route("/aura/agents/health", health.readiness, methods=["GET"]),
        Route("/aura/info", health.info, methods=["GET"]),
        Route("/health", liveness, methods=["GET"]),
        Route("/aura/openapi.json", ApiDescriptionEndpoint().document, methods=["GET"]),
        *ConsolePage().routes(),
        *dev_tokens,
        *metrics,
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request.headers, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound(f"No route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}")
    else:
        error = HttpError(exc.status_code, exc.detail)
    response = error_response(request.headers, error)
    for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
        response.headers[name] = value
    return response


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    """The client went away before its body was complete: its mistake, not a 500 with a traceback.

    Nobody reads the answer; it is a 400 E1001 envelope all the same, like every other error.
    """
    assert isinstance(exc, ClientDisconnect)
    log.info("client disconnected before the request body of %s %s was complete", request.method, request.url.path)
    return error_response(request.headers, BadRequest("Client disconnected before the request body was complete"))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request.headers, InternalError())


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """Build the app; the runtime (Redis, subscriber, sessions) starts with the lifespan."""
    rt = runtime if runtime is not None else Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with rt:
            yield

    app = Starlette(
        routes=routes(rt),
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_disconnected,
            Exception: _unexpected_error,
        },
    )
    app.state.runtime = rt
    return app
