"""A real Redis Sentinel set-up on free loopback ports: a primary, a replica and three sentinels."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.redis_cluster import (
    FAST_REPLICATION,
    HOST,
    Address,
    RedisProcess,
    free_ports,
    info_fields,
    poll,
)

SENTINELS = 3
QUORUM = 2


class SentinelServers:
    """One primary, one replica (``--replicaof``) and three ``redis-server --sentinel`` watching them.

    ``sentinel_password`` is the sentinels' ``requirepass`` (and ``sentinel sentinel-pass``, which
    they need to talk to one another); the data nodes have no password.
    """

    def __init__(
        self,
        master_name: str = "aura-primary",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        sentinel_password: str | None = None,
    ) -> None:
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_password = sentinel_password
        self.dir = Path(tempfile.mkdtemp(prefix="aura-sentinel-"))
        primary_port, replica_port, *sentinel_ports = free_ports(2 + SENTINELS)
        # A directory per node: replicas receive the RDB of a full sync into their dir.
        self.data_nodes: dict[int, RedisProcess] = {
            port: RedisProcess(port, self.dir / str(port), self._data_args(port))
            for port in (primary_port, replica_port)
        }
        self._first_primary = primary_port
        self.sentinel_nodes: dict[int, RedisProcess] = {
            port: RedisProcess(port, self.dir / str(port), [str(self.dir / str(port) / "sentinel.conf"), "--sentinel"],
                               password=sentinel_password)
            for port in sentinel_ports
        }

    @property
    def sentinels(self) -> list[Address]:
        return [node.address for node in self.sentinel_nodes.values()]

    @property
    def url(self) -> str:
        seeds = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{seeds}/{self.master_name}/0"

    # -- life cycle

    def __enter__(self) -> SentinelServers:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> SentinelServers:
        try:
            primary, replica = self.data_nodes.values()
            primary.start()
            primary.wait_ready()
            replica.start(["--replicaof", HOST, str(primary.port)])
            replica.wait_ready()
            # Before the sentinels: a sentinel whose first INFO of the primary lists no replica
            # would only learn of it from the next INFO, 10 s later.
            poll(lambda: self._link_up(replica), timeout, f"replica {replica.port} to sync")
            for node in self.sentinel_nodes.values():
                self._write_config(node)
                node.start()
            for node in self.sentinel_nodes.values():
                node.wait_ready()
            poll(self._settled, timeout, lambda: f"the sentinels to settle: {self._describe()}")
        except BaseException as exc:
            details = self._logs()
            self.stop()
            if isinstance(exc, Exception):
                raise RuntimeError(f"Redis Sentinel set-up did not start: {exc}\n{details}") from exc
            raise
        return self

    def stop(self) -> None:
        for node in [*self.sentinel_nodes.values(), *self.data_nodes.values()]:
            node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _data_args(self, port: int) -> list[str]:
        return [
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir / str(port)),
            *FAST_REPLICATION,
        ]

    def _write_config(self, node: RedisProcess) -> None:
        # Sentinels rewrite this file (ids, known replicas and sentinels, epochs): a restart reuses it.
        name = self.master_name
        lines = [
            f"port {node.port}",
            f"bind {HOST}",
            f"dir {node.dir}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {HOST} {self._first_primary} {QUORUM}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.sentinel_password is not None:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        (node.dir / "sentinel.conf").write_text("\n".join(lines) + "\n")

    # -- topology, as the sentinels report it now

    def primary(self) -> Address:
        """The primary's address by the word of the first sentinel that answers."""
        for node in self.sentinel_nodes.values():
            if node.alive:
                reply = node.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if reply:
                    return (str(reply[0]), int(reply[1]))
        raise RuntimeError(f"no live sentinel knows {self.master_name}")

    def replica(self) -> Address:
        """The data node that is not the primary."""
        primary_port = self.primary()[1]
        (port,) = [port for port in self.data_nodes if port != primary_port]
        return (HOST, port)

    def _reported(self) -> set[Address]:
        """The primary by the word of each live sentinel (one address once they agree)."""
        addresses = set()
        for node in self.sentinel_nodes.values():
            if node.alive:
                reply = node.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                addresses.add((str(reply[0]), int(reply[1])) if reply else ("", 0))
        return addresses

    def _agreed_primary(self) -> int | None:
        """The port every live sentinel reports as primary, if they agree and it is a live master."""
        reported = self._reported()
        if len(reported) != 1:
            return None
        ((_, port),) = reported
        return port if port in self.data_nodes and self._is_master(port) else None

    def _settled(self, *, replica_links: bool = True) -> bool:
        """The sentinels agree on a live primary, its live replicas replicate it, each sentinel sees them all.

        ``replica_links``: also the sentinels' own view of each replica's link (``master-link-status``).
        They learn it from INFO, which they send a replica every 10 s only: after a failover or a restart
        that view lags for up to 10 s, while ROLE on the node itself is already right.
        """
        primary_port = self._agreed_primary()
        if primary_port is None:
            return False
        replicas = [node for port, node in self.data_nodes.items() if port != primary_port and node.alive]
        if not all(self._replicates(node, primary_port) for node in replicas):
            return False
        for sentinel in self.sentinel_nodes.values():
            if not sentinel.alive:
                continue
            master = _pairs(sentinel.command("SENTINEL", "MASTER", self.master_name))
            if master["flags"] != "master" or int(master["num-other-sentinels"]) != len(self.sentinel_nodes) - 1:
                return False
            seen = {
                int(fields["port"]): fields
                for fields in map(_pairs, sentinel.command("SENTINEL", "REPLICAS", self.master_name))
            }
            for node in replicas:
                fields = seen.get(node.port)
                if fields is None or fields["flags"] != "slave":
                    return False
                if replica_links and fields["master-link-status"] != "ok":
                    return False
        return True

    def _is_master(self, port: int) -> bool:
        node = self.data_nodes[port]
        return node.alive and node.command("ROLE")[0] == "master"

    @staticmethod
    def _replicates(node: RedisProcess, primary_port: int) -> bool:
        """``node`` is a replica of ``primary_port``, connected (ROLE: slave, host, port, state, offset)."""
        role = node.command("ROLE")
        return bool(role[0] == "slave" and int(role[2]) == primary_port and role[3] == "connected")

    @staticmethod
    def _link_up(node: RedisProcess) -> bool:
        return info_fields(node.command("INFO", "replication")).get("master_link_status") == "up"

    # -- faults

    def failover(self, timeout: float = 30) -> Address:
        """``SENTINEL FAILOVER``, until the other node is primary for every sentinel and the old one its replica."""
        old = self.primary()

        def asked() -> bool:
            sentinel = next(node for node in self.sentinel_nodes.values() if node.alive)
            # Never twice: a retry after a lost reply would start a second failover, back to ``old``.
            if self._reported() != {old} or "failover_in_progress" in self._flags(sentinel):
                return True
            # NOGOODSLAVE or INPROG (an error, so poll tries again): the sentinel is still catching up.
            return bool(sentinel.command("SENTINEL", "FAILOVER", self.master_name) in ("OK", True))

        poll(asked, timeout, f"a sentinel to accept SENTINEL FAILOVER {self.master_name}")
        poll(
            lambda: self._reported() != {old} and self._settled(replica_links=False),
            timeout,
            lambda: f"the failover away from {old[1]}: {self._describe()}",
        )
        return self.primary()

    def _flags(self, sentinel: RedisProcess) -> list[str]:
        return _pairs(sentinel.command("SENTINEL", "MASTER", self.master_name))["flags"].split(",")

    def kill_primary(self) -> Address:
        """SIGKILL the current primary; returns its address."""
        address = self.primary()
        self.data_nodes[address[1]].kill()
        return address

    def wait_for_new_primary(self, timeout: float = 30) -> Address:
        """Until every live sentinel reports the same live primary and that node says ROLE master."""
        poll(lambda: self._agreed_primary() is not None, timeout, lambda: f"a new primary: {self._describe()}")
        return self.primary()

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a killed data node or sentinel again, and wait until the set-up has settled.

        A data node comes back as a replica of the current primary: restarted as a master, it would be
        an empty second primary until the sentinels noticed and converted it, some 8 s later.
        """
        node = self.data_nodes.get(port) or self.sentinel_nodes[port]
        if node.alive:
            raise RuntimeError(f"port {port} is running: kill it first")
        if port in self.data_nodes:
            # Every sentinel's word, not the first one's: right after a failover one may still name the
            # dead node, and the node would come back as a second, empty primary (a flaky test did).
            reported = self._reported()
            if reported == {(HOST, port)}:
                node.start([])  # no failover happened: it is the primary again
            else:
                poll(lambda: self._agreed_primary() not in (None, port), timeout,
                     lambda: f"the sentinels to agree on a live primary before {port} rejoins: {self._describe()}")
                node.start(["--replicaof", HOST, str(self._agreed_primary())])
        else:
            node.start()
        node.wait_ready()
        poll(lambda: self._settled(replica_links=False), timeout, lambda: f"{port} to rejoin: {self._describe()}")

    # -- diagnostics

    def _describe(self) -> str:
        lines = []
        for node in [*self.data_nodes.values(), *self.sentinel_nodes.values()]:
            if not node.alive:
                lines.append(f"{node.port}: down")
                continue
            try:
                if node in self.data_nodes.values():
                    lines.append(f"{node.port}: ROLE {node.command('ROLE')[:3]}")
                else:
                    master = _pairs(node.command("SENTINEL", "MASTER", self.master_name))
                    keys = ("ip", "port", "flags", "num-slaves", "num-other-sentinels", "failover-state")
                    lines.append(f"{node.port}: sentinel {' '.join(f'{k}={master.get(k)}' for k in keys)}")
            except Exception as exc:  # diagnostics only: say what went wrong and go on
                lines.append(f"{node.port}: {exc!r}")
        return "\n  " + "\n  ".join(lines)

    def _logs(self) -> str:
        return "\n".join(node.tail() for node in [*self.data_nodes.values(), *self.sentinel_nodes.values()])


def _pairs(reply: Any) -> dict[str, str]:
    """A SENTINEL MASTER / REPLICAS entry: a flat RESP2 list of field, value, field, value."""
    items = [str(item) for item in reply]
    return dict(zip(items[::2], items[1::2]))
