"""Connections to Redis: the configured server, or an embedded in-process one.

Two clients: one for commands and one that holds the process's single Pub/Sub
connection, so a slow subscriber never starves commands of connections.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from aura.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedisClients:
    commands: Redis
    subscriber: Redis
    embedded: bool

    @property
    def mode(self) -> str:
        return "embedded" if self.embedded else "external"

    async def aclose(self) -> None:
        for client in (self.subscriber, self.commands):
            with contextlib.suppress(Exception):
                await client.aclose()


def connect(settings: Settings) -> RedisClients:
    if settings.redis_url is None:
        import fakeredis  # only the embedded default needs it

        server = fakeredis.FakeServer()
        log.warning(
            "No REDIS_URL/REDIS_HOST configured: using an embedded in-process Redis; "
            "main-service and other replicas cannot reach it, so approvals must use Aura's own /aura/hitl API"
        )
        return RedisClients(
            commands=fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
            subscriber=fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
            embedded=True,
        )
    timeout = settings.redis_timeout_seconds

    def client() -> Redis:
        return Redis.from_url(
            settings.redis_url or "",
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )

    return RedisClients(commands=client(), subscriber=client(), embedded=False)
