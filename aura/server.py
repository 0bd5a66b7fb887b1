"""uvicorn, configured for SSE and bounded: streams are ended by Aura before uvicorn waits on them,
and the HTTP protocol enforces the head size, read timeouts and connection limit (``http/protocol.py``)."""

from __future__ import annotations

import socket

import uvicorn

from aura.config import Settings
from aura.http import access_log, create_app
from aura.http.protocol import HttpLimits, protocol_class
from aura.runtime import Runtime


class AuraServer(uvicorn.Server):
    """uvicorn waits for open responses before the lifespan shutdown runs, and an SSE
    response never ends by itself; so drain the sessions first, then let uvicorn go on."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self._runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._runtime.drain()
        await super().shutdown(sockets)


def build_server(settings: Settings) -> AuraServer:
    """The server, its protocol bound to the settings' HTTP limits.

    Not uvicorn's ``limit_concurrency``: the protocol refuses a connection beyond
    ``http_max_connections`` with the error envelope, and uvicorn's check (connections or
    tasks, at each request) would answer plain text; each connection runs one request task
    at a time, so it would bound nothing more. uvicorn configures no logging
    (``log_config=None``): its records go to the root logger ``aura serve`` sets up, one
    format on stderr, and the access log loses its query strings (``http/access_log.py``).
    """
    runtime = Runtime(settings)
    access_log.install()
    config = uvicorn.Config(
        create_app(settings, runtime),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_class(HttpLimits.of(settings)),
        ws="none",  # Aura serves no WebSocket; an upgrade would leave the limited protocol
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        # uvicorn annotates int but only hands it to loop.call_later, which takes float seconds.
        timeout_keep_alive=settings.http_keepalive_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 1,
    )
    return AuraServer(config, runtime)
