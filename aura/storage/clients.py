"""Connections to Redis: a server, a Sentinel-managed primary, a Cluster, or an embedded in-process one.

redis-py's own clients do the work (``Redis`` with a blocking pool, ``Sentinel``,
``RedisCluster``); this module only chooses and configures them from a
:class:`RedisTarget`. Two clients, one for commands and one that holds the
process's single Pub/Sub connection, so a slow subscriber never starves commands
of connections.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import hiredis
from redis._parsers import AsyncCommandsParser
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError, DataError, ReadOnlyError, RedisError
from redis.typing import EncodableT

from aura.errors import StoreUnavailable
from aura.storage.calls import bounded
from aura.storage.target import RedisMode, RedisTarget

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


# A pooled connection that Redis closed (a restart in place), or that answers READONLY (a
# primary demoted behind the same address), is dropped and the command sent again, a
# bounded number of times. A timeout is not retried: the command may have run.
RETRIED_ERRORS: Final[tuple[type[RedisError], ...]] = (ConnectionError, ReadOnlyError)
RETRIES: Final = 3
CLUSTER_CONNECTIONS_PER_NODE: Final = 512  # redis-py's cluster pool fails past it instead of waiting
SENTINEL_CONNECTIONS: Final = 512  # likewise its Sentinel pool


def _retry() -> Retry:
    # supported_errors replaces redis-py's default (ConnectionError, TimeoutError): no timeout is retried.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), RETRIES, supported_errors=RETRIED_ERRORS)


def _no_retry(options: dict[str, Any]) -> dict[str, Any]:
    """The subscriber's options: redis-py must not reconnect a lost subscription silently, or the
    hub would not know to sweep for what was published meanwhile (it reconnects, and sweeps, itself)."""
    return {**options, "retry": Retry(NoBackoff(), 0)}


class CommandTableOnce(AsyncCommandsParser):
    """The command table, read once, from whichever primary answers.

    redis-py 8.1's cluster client re-reads ``COMMAND`` from its default node (the
    first master of CLUSTER SLOTS) on every topology refresh, which any connection
    error schedules. While that master is down, every command then failed, for the
    slots of the live masters too. The table is fixed for a server version, so one
    read is enough, and the first one may come from any primary.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        super().__init__()
        self._cluster = cluster

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if self.commands:
            return
        candidates = [node] if node is not None else []
        candidates += [n for n in self._cluster.get_primaries() if n not in candidates]
        failure: Exception | None = None
        for candidate in candidates:
            try:
                await super().initialize(candidate)
                return
            except (ConnectionError, TimeoutError, OSError) as exc:
                failure = exc
        if failure is not None:
            raise failure
        await super().initialize(node)


@dataclass(frozen=True, slots=True)
class RedisClients:
    commands: Redis
    subscriber: Redis
    embedded: bool
    mode: str = "embedded"  # embedded, standalone, sentinel or cluster
    target: RedisTarget | None = None

    async def initialize(self, timeout: float) -> None:
        """Learn a cluster's slots before the subscriber needs them (redis-py's pubsub assumes it)."""
        for client in (self.commands, self.subscriber):
            if isinstance(client, RedisCluster):
                await bounded(client.initialize(), timeout, "discover the cluster")

    async def follow_primary(self, timeout: float) -> bool:
        """Ask the sentinels where the primary is now; True if it moved (Sentinel mode only).

        redis-py checks only when it opens a connection, so pooled connections kept
        writing to a demoted primary, whose writes the resync then drops, until
        Sentinel reconfigured it (about 10 s after a SENTINEL FAILOVER). Asking
        every second makes the pool drop its idle connections to the old one.
        """
        moved = False
        for client in (self.commands, self.subscriber):
            moved = await _ask_sentinels(client, timeout) or moved
        return moved

    async def writable(self, timeout: float) -> bool:
        """True if Redis takes writes here: a primary (not a demoted one), or a cluster whose slots are all served."""
        client: Any = self.commands
        try:
            if self.embedded:
                return bool(await bounded(client.ping(), timeout, "ping"))
            if isinstance(client, RedisCluster):
                info = await bounded(client.cluster_info(), timeout, "cluster info")
                return bool(info.get("cluster_state") == "ok")
            # The primary the sentinels name now, not the one we knew. Only the commands' pool: the
            # subscriber's move is left for follow_primary, whose caller moves the subscription.
            await _ask_sentinels(client, timeout)
            role = await bounded(client.execute_command("ROLE"), timeout, "role")
            return bool(role) and _text(role[0]) == "master"
        except StoreUnavailable:
            return False

    async def aclose(self) -> None:
        for client in (self.subscriber, self.commands):
            with contextlib.suppress(Exception):
                await client.aclose()


async def _ask_sentinels(client: Redis, timeout: float) -> bool:
    """Point a Sentinel pool at the primary the sentinels name now; True if it moved."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return False
    before = pool.master_address
    after = await bounded(pool.get_master_address(), timeout, "ask the sentinels")  # type: ignore[no-untyped-call]
    # redis-py drops only the connections idle at the move; one busy then comes back to the pool still
    # pointed at the old primary, and is dropped here, at the next check after it was released.
    for connection in list(pool._available_connections):
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if connection.is_connected and address != tuple(after):
            await connection.disconnect()
    return before is not None and before != after


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSettings(Protocol):
    """What connecting needs of :class:`aura.config.Settings` (which imports this package: no import back)."""

    @property
    def redis_target(self) -> RedisTarget | None: ...

    @property
    def redis_timeout_seconds(self) -> float: ...


def connect(settings: RedisSettings) -> RedisClients:
    target = settings.redis_target
    if target is None:
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
    log.info("Redis: %s", target.describe())
    if target.mode is RedisMode.CLUSTER:
        return _cluster(target, timeout)
    if target.mode is RedisMode.SENTINEL:
        return _sentinel(target, timeout)
    return _standalone(target, timeout)


def _options(target: RedisTarget, timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "retry": _retry(),
    }
    if target.username is not None:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password
    return options


def _tls(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    return {"ssl_ca_certs": target.ca_file} if target.ca_file else {}


def _standalone(target: RedisTarget, timeout: float) -> RedisClients:
    options = {**_options(target, timeout), "db": target.db}
    if target.unix_path is not None:
        options.update(path=target.unix_path, connection_class=PackedUnixConnection)
    else:
        host, port = target.nodes[0]
        options.update(host=host, port=port)
        if target.tls:
            options.update(connection_class=PackedSSLConnection, **_tls(target))
        else:
            options.update(connection_class=PackedConnection)
    # redis-py's default pool raises MaxConnectionsError past 100 connections under load; a
    # small blocking pool keeps the count O(1) and makes a burst wait (bounded) instead of fail.
    pool = BlockingConnectionPool(max_connections=COMMAND_CONNECTIONS, timeout=timeout, **options)
    subscriber = Redis.from_pool(ConnectionPool(**_no_retry(options)))  # the one Pub/Sub connection
    return RedisClients(Redis.from_pool(pool), subscriber, embedded=False, mode="standalone", target=target)


def _sentinel(target: RedisTarget, timeout: float) -> RedisClients:
    options = {**_options(target, timeout), "db": target.db}
    if target.tls:
        options.update(ssl=True, **_tls(target))
    sentinel_options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if target.sentinel_username is not None:
        sentinel_options["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    if target.tls:
        sentinel_options.update(ssl=True, **_tls(target))
    # The pool asks the sentinels for the primary on every new connection; a connection to a
    # demoted primary turns READONLY into a ConnectionError, so the retry reconnects to the new one.
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_options, **options)  # type: ignore[no-untyped-call]
    master = target.sentinel_master
    assert master is not None  # parse_target requires it in sentinel mode
    # redis-py's Sentinel pool does not block: past its cap a burst fails, so the cap is generous.
    commands = sentinel.master_for(master, max_connections=SENTINEL_CONNECTIONS)
    subscriber = sentinel.master_for(master, **_no_retry({}))
    return RedisClients(commands, subscriber, embedded=False, mode="sentinel", target=target)


def _cluster(target: RedisTarget, timeout: float) -> RedisClients:
    options = _options(target, timeout)  # the cluster client adds its own list (MOVED, ASK, CLUSTERDOWN...)
    if target.tls:
        options.update(ssl=True, **_tls(target))

    def client() -> Redis:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=CLUSTER_CONNECTIONS_PER_NODE,
            **options,
        )
        cluster.commands_parser = CommandTableOnce(cluster)
        return cast(Redis, cluster)

    # Two clients: the cluster pubsub borrows a connection of its client's node pool, and a topology
    # refresh of that client (after any connection error) closes it. Classic Pub/Sub reaches every node.
    return RedisClients(client(), client(), embedded=False, mode="cluster", target=target)
