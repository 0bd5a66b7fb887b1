"""A real uvicorn serving Aura on 127.0.0.1, in a background thread with its own event loop."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import httpx

from aura.config import Settings
from aura.runtime import Runtime
from aura.server import AuraServer, build_server


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.settings = replace(settings, port=self.port, log_level="warning")
        self.server: AuraServer = build_server(self.settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def runtime(self) -> Runtime:
        return self.server._runtime

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def let_server_log_its_crash(response: httpx.Response) -> None:
    """On an unexpected 5xx, give uvicorn's thread time to log the traceback before pytest formats ours.

    CPython 3.11 before 3.11.8 keeps the AST constructor's recursion counter in shared state
    (gh-106905): two threads formatting tracebacks at once can raise SystemError inside pytest
    and abort the session with INTERNALERROR instead of reporting the failure.
    """
    if response.status_code >= 500:
        time.sleep(0.5)
