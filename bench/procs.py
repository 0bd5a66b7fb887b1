"""Subprocesses the harness owns (redis-server, Aura, the floor) and what /proc says about them.

Every child is started with a parent-death signal, so even a ``kill -9`` of the
harness does not leave a server behind; :class:`Processes` stops the rest in
reverse order on the way out, on success and on failure alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (children inherit it); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the harness dies, however it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) in seconds, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Child:
    """One subprocess with a log file; ``stop`` is idempotent."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.process = None


class Processes:
    """Owns every child of one run; a context manager that stops them all, newest first."""

    def __init__(self, *, keep_logs: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="aura-bench-"))
        self.keep_logs = keep_logs
        self._children: list[Child] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for child in reversed(self._children):
            with contextlib.suppress(Exception):
                child.stop()
        self._children.clear()
        if self.keep_logs:
            print(f"bench: server and redis logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self._children:
            self._children.remove(child)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> Child:
        child = Child(name, argv, env, self.workdir, cwd)
        self._children.append(child)
        child.start()
        return child


def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError("redis-server is not installed: `make bench` installs it (as root) via system-deps")
    return binary


class RedisProc:
    def __init__(self, procs: Processes, name: str) -> None:
        self.port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=procs.workdir))
        self.child = procs.spawn(
            name,
            [
                redis_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(data_dir),
            ],
            os.environ,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                line = await asyncio.wait_for(reader.readline(), 1.0)
                writer.close()
                if line.startswith(b"+PONG"):
                    return
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline or not self.child.alive():
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.child.log_tail()}")
            await asyncio.sleep(0.05)


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int:
    """Status code of ``GET path`` (0 when the connection fails): readiness polling only."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                line = await reader.readline()
            finally:
                writer.close()
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    except (OSError, TimeoutError, ValueError):
        return 0


async def http_json(
    host: str, port: int, path: str, timeout: float = 5.0, headers: Sequence[tuple[str, str]] = ()
) -> Any:
    """The JSON body of ``GET path`` (None on any failure): for the end-of-run health snapshot."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
                raw = await reader.read()
            finally:
                writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        if b"chunked" in head.lower():
            decoded = b""
            while body:
                size_text, _, rest = body.partition(b"\r\n")
                size = int(size_text, 16)
                if size == 0:
                    break
                decoded += rest[:size]
                body = rest[size + 2 :]
            body = decoded
        return json.loads(body)
    except (OSError, TimeoutError, ValueError):
        return None


class ServerProc:
    """A server under test (Aura or the floor) on 127.0.0.1, with its own Redis."""

    def __init__(
        self,
        procs: Processes,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        port: int,
        health_path: str,
        cwd: Path | None = None,
        health_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.name = name
        self.port = port
        self.health_path = health_path
        self.health_headers = tuple(health_headers)  # Aura shows its session counts only to a valid token
        self.child = procs.spawn(name, argv, env, cwd)

    @property
    def pid(self) -> int:
        return self.child.pid

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while await http_status("127.0.0.1", self.port, self.health_path) != 200:
            if time.monotonic() > deadline or not self.child.alive():
                raise RuntimeError(f"{self.name} did not become ready on port {self.port}:\n{self.child.log_tail()}")
            await asyncio.sleep(0.1)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if not self.child.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.child.log_tail()}")


def python() -> str:
    return sys.executable
