"""Connections to Redis: the configured server, or an embedded in-process one.

Two clients: one for commands and one that holds the process's single Pub/Sub
connection, so a slow subscriber never starves commands of connections.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from aura.config import Settings

log = logging.getLogger(__name__)

COMMAND_CONNECTIONS = 16


class _HiredisPacking(AbstractConnection):
    """Commands packed by hiredis's C packer, as redis-py's synchronous client already does.

    redis-py's asyncio connections pack in Python: a quarter of a plain
    session's CPU went to packing the arguments of its commands (docs/BENCHMARKS.md).
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])  # "SCRIPT LOAD" is two words on the wire
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # its stub types a 1-tuple
        except TypeError as exc:
            raise DataError(str(exc)) from exc


class PackedConnection(_HiredisPacking, Connection):
    pass


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
    SSLConnection: PackedSSLConnection,
}


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
    return _external(settings.redis_url, settings.redis_timeout_seconds)


def _external(url: str, timeout: float) -> RedisClients:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
    }
    # redis-py's default pool raises MaxConnectionsError past 100 connections under load; a
    # small blocking pool keeps the count O(1) and makes a burst wait (bounded) instead of fail.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=COMMAND_CONNECTIONS, timeout=timeout, **options
    )
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    subscriber = Redis.from_url(url, **options)
    return RedisClients(commands=Redis.from_pool(pool), subscriber=subscriber, embedded=False)  # owns the pool
