"""A real Redis Cluster (N masters, R replicas each) on free loopback ports, started by the suite.

Also home of the pieces ``redis_sentinel`` shares: ``RedisProcess`` (one redis-server in a
directory of its own, its output in a log there), ``command`` and the synchronous ``poll``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from tests.support.redis_server import free_port

HOST = "127.0.0.1"
SLOTS = 16384
Address = tuple[str, int]
# A replica's full sync starts at once, not after the default 5 s wait for more replicas to share
# the diskless transfer; and the master PINGs its replicas every 1 s, not 10 s, which moves their
# replication offset off 0: Redis 7.0 leaves a replica at offset 0 out of CLUSTER SLOTS.
FAST_REPLICATION = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
# One range of CLUSTER SLOTS: (first slot, last slot, master port, replica ports).
SlotRange = tuple[int, int, int, tuple[int, ...]]


MANUAL_FAILOVER_SECONDS = 6.0  # Redis abandons a manual failover after cluster-mf-timeout (5 s)


def _binary(name: str) -> str:
    binary = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(binary).exists():
        raise RuntimeError(f"{name} is not installed: run `make test`, which installs it")
    return binary


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: ``free_port()`` may hand the same port out twice in a row."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def command(port: int, *args: str | int, password: str | None = None, timeout: float = 2.0) -> Any:
    """One command on a connection of its own; the raw RESP2 reply, without redis-py's response callbacks."""
    # Typed by hand: redis-py leaves Connection's constructor, send_command and disconnect unannotated.
    connect: Callable[..., redis.Connection] = redis.Connection
    connection = connect(
        host=HOST,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        protocol=2,  # redis-py 8 speaks RESP3 by default: maps would come back as dicts
    )
    send: Callable[..., None] = connection.send_command
    disconnect: Callable[[], None] = connection.disconnect
    try:
        send(*args)
        return connection.read_response()
    finally:
        disconnect()


def info_fields(text: str) -> dict[str, str]:
    """``INFO`` and ``CLUSTER INFO`` replies: ``key:value`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def poll(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str], *, interval: float = 0.05) -> None:
    """Call ``predicate`` every ``interval`` s until it is true, or raise TimeoutError naming ``what``.

    The synchronous twin of ``tests.support.waiting.wait_until`` (these helpers run outside
    any event loop). A Redis or socket error counts as "not yet": nodes come and go here.
    The predicate runs once more after the deadline, so a slow machine fails nothing that did happen.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if expired:
            detail = what() if callable(what) else what
            error = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {detail}{error}")
        time.sleep(interval)


class RedisProcess:
    """One redis-server on ``port``, run in ``dir`` (its files and ``redis.log``, stdout and stderr)."""

    def __init__(self, port: int, dir: Path, args: Sequence[str], *, password: str | None = None) -> None:
        self.port = port
        self.dir = dir
        self.args = list(args)
        self.password = password
        self.log_path = dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        dir.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, extra_args: Sequence[str] = ()) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_binary("redis-server"), *self.args, *extra_args],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 10) -> None:
        def answers() -> bool:
            if not self.alive:
                code = self.process.returncode if self.process is not None else None
                raise RuntimeError(f"redis-server on port {self.port} exited with code {code}:\n{self.tail()}")
            return bool(self.command("PING") in ("PONG", True))

        poll(answers, timeout, f"redis-server on port {self.port} to answer PING")

    def command(self, *args: str | int, timeout: float = 2.0) -> Any:
        return command(self.port, *args, password=self.password, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save, like a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        last = text.splitlines()[-lines:]
        return "\n".join(f"  [{self.port}] {line}" for line in last)


class ClusterServers:
    """``masters`` masters with ``replicas`` replicas each, formed by ``redis-cli --cluster create``.

    Each node's cluster bus port is a free port of its own (``--cluster-port``): the default,
    port + 10000, is past 65535 for the top of the ephemeral range that ``free_port()`` draws from.
    ``seeds`` (and ``url``) are the masters as formed, kept through failovers: clients try each in turn.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 1000) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.node_timeout_ms = node_timeout_ms
        self.replicas_per_master = replicas
        self.dir = Path(tempfile.mkdtemp(prefix="aura-cluster-"))
        count = masters * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes: dict[int, RedisProcess] = {}
        for port, bus_port in zip(ports[:count], ports[count:]):
            node_dir = self.dir / str(port)
            self.nodes[port] = RedisProcess(
                port,
                node_dir,
                [
                    "--port", str(port),
                    "--bind", HOST,
                    "--cluster-enabled", "yes",
                    "--cluster-port", str(bus_port),
                    "--cluster-config-file", str(node_dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(node_dir),
                    *FAST_REPLICATION,
                ],
            )
        self.seeds: list[Address] = []

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"{host}:{port}" for host, port in self.seeds) + "/0"

    # -- life cycle

    def __enter__(self) -> ClusterServers:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> ClusterServers:
        try:
            for node in self.nodes.values():
                node.start()
            for node in self.nodes.values():
                node.wait_ready()
            self._create(timeout)
            poll(self._formed, timeout, lambda: f"the cluster to form: {self._describe()}")
            self.seeds = self.masters()
        except BaseException as exc:
            details = self._logs()
            self.stop()
            if isinstance(exc, Exception):
                raise RuntimeError(f"Redis Cluster did not start: {exc}\n{details}") from exc
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _create(self, timeout: float) -> None:
        log_path = self.dir / "cluster-create.log"
        with log_path.open("ab") as log:
            result = subprocess.run(
                [
                    _binary("redis-cli"), "--cluster", "create",
                    *(f"{HOST}:{port}" for port in self.nodes),
                    "--cluster-replicas", str(self.replicas_per_master),
                    "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,  # run() kills redis-cli when it expires
            )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create exited with code {result.returncode}")

    def _formed(self) -> bool:
        # Right after `create`, nodes still see the replicas as masters and some say cluster_state:fail.
        views = [self._slot_map(port) for port in self.nodes]
        if any(view != views[0] for view in views) or not _covers_all_slots(views[0]):
            return False
        if any(len(replicas) != self.replicas_per_master for *_, replicas in views[0]):
            return False
        return all(self._state_ok(port) for port in self.nodes) and all(
            self._link_up(port) for port in self._ports_of(self.replicas())
        )

    # -- topology, as the nodes report it now

    def live_ports(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.alive]

    def masters(self) -> list[Address]:
        return self._with_role("master")

    def replicas(self) -> list[Address]:
        return self._with_role("slave")

    def replicas_of(self, master_port: int) -> list[Address]:
        """The live replicas that ``master_port`` has, by their own word."""
        master_id = self._myself(master_port)[0]
        return [(HOST, port) for port in self._ports_of(self.replicas()) if self._myself(port)[3] == master_id]

    def node_for_key(self, key: str) -> Address:
        """The master serving ``key``'s slot, as the first live node that answers sees it."""
        error: BaseException | None = None
        for port in self.live_ports():
            try:
                slot = int(command(port, "CLUSTER", "KEYSLOT", key))
                for first, last, master, _ in self._slot_map(port):
                    if first <= slot <= last:
                        return (HOST, master)
                raise RuntimeError(f"slot {slot} of {key!r} is served by no node, says port {port}")
            except (redis.RedisError, OSError) as exc:
                error = exc
        raise RuntimeError(f"no live cluster node answered for {key!r}") from error

    def _with_role(self, role: str) -> list[Address]:
        # A node's own line in CLUSTER NODES is its current role: roles move on a failover.
        return [(HOST, port) for port in self.live_ports() if role in self._myself(port)[2].split(",")]

    def _myself(self, port: int) -> list[str]:
        """``port``'s own line of CLUSTER NODES: id, address, flags, master id, ..."""
        text: str = command(port, "CLUSTER", "NODES")
        for line in text.splitlines():
            fields = line.split()
            if "myself" in fields[2].split(","):
                return fields
        raise RuntimeError(f"CLUSTER NODES on port {port} has no `myself` line:\n{text}")

    def _slot_map(self, port: int, *, with_replicas: bool = True) -> list[SlotRange]:
        reply: list[list[Any]] = command(port, "CLUSTER", "SLOTS")
        ranges: list[SlotRange] = []
        for first, last, master, *replicas in reply:
            replica_ports = tuple(sorted(int(r[1]) for r in replicas)) if with_replicas else ()
            ranges.append((int(first), int(last), int(master[1]), replica_ports))
        return sorted(ranges)

    def _state_ok(self, port: int) -> bool:
        return info_fields(command(port, "CLUSTER", "INFO")).get("cluster_state") == "ok"

    def _link_up(self, port: int) -> bool:
        return info_fields(command(port, "INFO", "replication")).get("master_link_status") == "up"

    @staticmethod
    def _ports_of(addresses: list[Address]) -> list[int]:
        return [port for _, port in addresses]

    def wait_for_replicas(self, master_port: int, timeout: float = 10) -> None:
        """Until every replica of ``master_port`` has applied all it has written so far (replication is async)."""
        target = int(info_fields(command(master_port, "INFO", "replication"))["master_repl_offset"])

        def applied(port: int) -> bool:
            return int(info_fields(command(port, "INFO", "replication")).get("slave_repl_offset", -1)) >= target

        poll(
            lambda: all(applied(port) for port in self._ports_of(self.replicas_of(master_port))),
            timeout,
            f"the replicas of {master_port} to reach offset {target}",
        )

    # -- faults

    def kill(self, port: int) -> None:
        self.nodes[port].kill()

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a killed node again on its nodes.conf: it rejoins, a replica if its slots moved on."""
        node = self.nodes[port]
        if node.alive:
            raise RuntimeError(f"cluster node {port} is running: kill it first")
        node.start()
        node.wait_ready()
        poll(
            lambda: self._agreed() and port in self._ports_of(self.masters() + self.replicas()),
            timeout,
            lambda: f"node {port} to rejoin: {self._describe()}",
        )
        if port in self._ports_of(self.replicas()):
            poll(lambda: self._link_up(port), timeout, f"restarted replica {port} to sync")

    def wait_for_failover(self, dead_port: int, timeout: float = 30) -> None:
        """Until a replica serves ``dead_port``'s slots and every surviving node says cluster_state:ok."""

        def failed_over() -> bool:
            return self._agreed() and all(master != dead_port for _, _, master, _ in self._slot_map(self.live_ports()[0]))

        poll(failed_over, timeout, lambda: f"a failover of {dead_port}: {self._describe()}")

    def failover(self, replica_port: int, timeout: float = 30) -> None:
        """A manual ``CLUSTER FAILOVER`` on ``replica_port``, until every node sees it master of the slots."""
        old_master_id = self._myself(replica_port)[3]
        asked_at = 0.0

        def promoted() -> bool:
            nonlocal asked_at
            myself = self._myself(replica_port)
            if "slave" in myself[2].split(",") and time.monotonic() - asked_at > MANUAL_FAILOVER_SECONDS:
                # A manual failover that times out (the replica's offset did not catch up within
                # cluster-mf-timeout on a loaded machine) is abandoned silently: ask again (a flaky test did).
                if command(replica_port, "CLUSTER", "FAILOVER") not in ("OK", True):
                    raise RuntimeError(f"CLUSTER FAILOVER refused by {replica_port}")
                asked_at = time.monotonic()
                return False
            served = {master for _, _, master, _ in self._slot_map(replica_port, with_replicas=False)}
            return "master" in myself[2].split(",") and replica_port in served and self._agreed()

        poll(promoted, timeout, lambda: f"{replica_port} to take over from {old_master_id}: {self._describe()}")

    def _agreed(self) -> bool:
        """Every live node says cluster_state:ok and maps every slot to the same live masters."""
        live = self.live_ports()
        views = [self._slot_map(port, with_replicas=False) for port in live]
        return (
            all(view == views[0] for view in views)
            and _covers_all_slots(views[0])
            and all(master in live for _, _, master, _ in views[0])
            and all(self._state_ok(port) for port in live)
        )

    # -- diagnostics

    def _describe(self) -> str:
        lines = []
        for port, node in self.nodes.items():
            if not node.alive:
                lines.append(f"{port}: down")
                continue
            try:
                state = info_fields(command(port, "CLUSTER", "INFO")).get("cluster_state")
                lines.append(f"{port}: cluster_state:{state} {' '.join(self._myself(port)[2:4])} slots={self._slot_map(port)}")
            except (redis.RedisError, OSError) as exc:
                lines.append(f"{port}: {exc!r}")
        return "\n  " + "\n  ".join(lines)

    def _logs(self) -> str:
        parts = [node.tail() for node in self.nodes.values()]
        create_log = self.dir / "cluster-create.log"
        if create_log.exists():
            parts.append("redis-cli --cluster create:\n" + "\n".join(create_log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def _covers_all_slots(ranges: list[SlotRange]) -> bool:
    """Sorted ranges that tile 0..16383 without a gap or an overlap."""
    expected = 0
    for first, last, _, _ in ranges:
        if first != expected:
            return False
        expected = last + 1
    return expected == SLOTS
