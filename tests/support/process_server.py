"""`python -m aura serve` as a real subprocess, to kill for real (SIGKILL, SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.auth import SECRET
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


# The suite runs thousands of sessions as a handful of users: its servers have room for them. The
# limits themselves are tested with small values (tests/aura/http/test_limits.py).
SUITE_LIMITS: dict[str, str] = {
    "AURA_MAX_LIVE_SESSIONS_PER_USER": "10000",
    "AURA_MAX_LIVE_SESSIONS_PER_TENANT": "100000",
    "AURA_MAX_KEPT_SESSIONS_PER_USER": "100000",
    "AURA_MAX_STREAMS_PER_USER": "10000",
    "AURA_MAX_STREAMS_PER_TENANT": "100000",
}


class AuraProcess:
    """``aura serve`` on a free port; ``redis_url=None`` runs the embedded in-process Redis.

    The environment is the test process's minus any JWT_/AURA_/REDIS_ setting, plus
    short leases and timeouts for tests, plus ``env`` (which wins).
    """

    def __init__(self, redis_url: str | None, **env: str) -> None:
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "AURA_", "REDIS_"))}
        self.env = {
            **base,
            "JWT_SECRET": SECRET,
            "AURA_PORT": str(self.port),
            "AURA_LOG_LEVEL": "warning",
            "AURA_LEASE_SECONDS": "1",
            "AURA_SIGNAL_SWEEP_SECONDS": "0.5",
            "AURA_SHUTDOWN_GRACE_SECONDS": "3",
            "AURA_REDIS_TIMEOUT_SECONDS": "1",
            **SUITE_LIMITS,
            **({"REDIS_URL": redis_url} if redis_url else {}),
            **env,
        }
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AuraProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aura", "serve"], cwd=ROOT, env=self.env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGKILL)
                raise RuntimeError(f"aura serve did not start on port {self.port}:\n{self.wait(timeout=5)}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15) -> str:
        """Wait for the exit; return what the process wrote to stderr."""
        if self.process is None:
            return ""
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=5)
        return stderr or ""


@contextlib.contextmanager
def logged_aura(redis_url: str | None, **env: str) -> Iterator[AuraProcess]:
    """``aura serve`` at log level info, its stderr drained (a full pipe would block it), killed at the end.

    What it logged is printed at the end: pytest shows it with a failure.
    """
    aura = AuraProcess(redis_url, **{"AURA_LOG_LEVEL": "info", **env}).start()
    process = aura.process
    assert process is not None and process.stderr is not None
    stderr = process.stderr
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(stderr), name=f"aura-{aura.port}-stderr", daemon=True)
    reader.start()
    try:
        yield aura
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=5)
        stderr.close()
        print(f"--- aura serve on port {aura.port} logged:\n{''.join(lines)}")
