"""uvicorn, configured for SSE: streams are ended by Aura before uvicorn waits on them."""

from __future__ import annotations

import socket

import uvicorn

from aura.config import Settings
from aura.http import create_app
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
    runtime = Runtime(settings)
    config = uvicorn.Config(
        create_app(settings, runtime),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 1,
    )
    return AuraServer(config, runtime)
