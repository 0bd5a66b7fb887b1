"""A real redis-server on a free loopback port, started and stopped by the suite."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import redis
from redis.asyncio.client import PubSub


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def close_pubsub(pubsub: PubSub) -> None:
    """``await pubsub.aclose()``, typed: redis-py leaves ``PubSub.aclose`` unannotated."""
    aclose: Callable[[], Awaitable[None]] = pubsub.aclose
    await aclose()


class RedisServer:
    """``extra_args`` go to redis-server after the suite's own (``--aclfile``, ``--cluster-enabled``, ...);
    ``username``/``password`` are the ACL user that :meth:`start` and :meth:`client` log in as, for a
    server whose default user is off."""

    def __init__(
        self,
        *,
        persistent: bool = False,
        extra_args: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.persistent = persistent  # AOF with fsync on every write: survives a restart
        self.extra_args = tuple(extra_args)
        self.username = username
        self.password = password
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="aura-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--dir", self.dir,
                "--notify-keyspace-events", "K$",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, username=self.username, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, decode_responses=True, socket_timeout=5, username=self.username, password=self.password
        )
