"""A real nginx on a free loopback port, proxying the gateway's Aura route (CONTRACT §1.2, §3.7).

nginx runs in the foreground as a child of the test process (``daemon off;``) with
``-p``/``-e`` and every path directive pointing into a private temp dir, so nothing
under /etc or /var is read or written. ``/api/aura/**`` is forwarded to
``/aura/**`` on the upstream, as the DWP gateway does (StripPrefix=1): :func:`aura_route` is that
``server`` block; another one (compose.yaml's gateway, tests/test_compose.py) may be given instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.redis_server import free_port

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary() -> str:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "nginx is not installed (looked on PATH and in /usr/sbin): run `make test`, which installs it "
        "with apt-get when root, or `sudo apt-get install nginx`; the nginx proxy tests cannot run without it"
    )


def require_nginx() -> None:
    """A missing nginx fails the test loudly: the suite installs it, and a proxy path is never skipped."""
    problem = None
    try:
        nginx_binary()
    except RuntimeError as missing:
        problem = str(missing)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _supports_error_log_flag(binary: str) -> bool:
    """``-e`` (set the startup error log, so /var/log is never touched) exists since nginx 1.19.5."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return match is None or tuple(int(part) for part in match.groups()) >= (1, 19, 5)


# (listen port, upstream port) -> an http-level `server { ... }` block listening on 127.0.0.1:port.
ServerBlock = Callable[[int, int], str]


def aura_route(port: int, upstream_port: int) -> str:
    return f"""\
    server {{
        listen 127.0.0.1:{port};

        # The gateway's mapping: /api/aura/** -> /aura/** (CONTRACT §1.2).
        location /api/aura/ {{
            proxy_pass http://127.0.0.1:{upstream_port}/aura/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 300s;
            # nginx hides X-Accel-* upstream headers by default; the real gateway passes
            # Aura's X-Accel-Buffering through, so do the same to let clients see it.
            proxy_pass_header X-Accel-Buffering;
        }}
    }}
"""


def nginx_config(prefix: Path, server: str) -> str:
    """A whole nginx.conf whose every path is under ``prefix``, serving ``server`` (a ``server`` block)."""
    # No `user` directive: as root nginx's workers then run as `nobody` (the prefix is made
    # world-readable for them); as a normal user nginx keeps the current user.
    return f"""\
worker_processes 1;
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log warn;
worker_shutdown_timeout 2s;

events {{
    worker_connections 256;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    server_tokens off;

{server}}}
"""


class NginxProxy:
    def __init__(self, upstream_port: int, server: ServerBlock = aura_route) -> None:
        self.binary = nginx_binary()
        self.upstream_port = upstream_port
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="aura-nginx-"))
        os.chmod(self.prefix, 0o755)  # workers run as `nobody` when the master is root
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(nginx_config(self.prefix, server(self.port, upstream_port)))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            path = self.prefix / name
            if path.exists():
                out.append(f"--- {name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(out)

    def _command(self, *flags: str) -> list[str]:
        command = [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), *flags]
        if _supports_error_log_flag(self.binary):
            command[1:1] = ["-e", str(self.prefix / "error.log")]
        return command

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration (nothing starts; call :meth:`stop` to remove the prefix)."""
        return subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> NginxProxy:
        command = self._command("-g", "daemon off;")
        with open(self.prefix / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    logs = self.logs()
                    self.stop()
                    raise RuntimeError(
                        f"nginx did not start on 127.0.0.1:{self.port} ({' '.join(command)})\n{logs}"
                    ) from None
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            else:
                process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)
