"""HTTP/1.1 over a plain socket, to see what an HTTP client hides: the chunks of a chunked response.

uvicorn sends every ``http.response.body`` message as one chunk of the chunked
transfer coding, so the chunk boundaries on the wire are Aura's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    reader: asyncio.StreamReader

    @property
    def chunked(self) -> bool:
        return self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def chunk(self) -> bytes:
        """The next chunk's data; ``b""`` for the last (zero-size) chunk."""
        line = await self.reader.readuntil(b"\r\n")
        size = int(line[:-2].split(b";", 1)[0], 16)
        data = await self.reader.readexactly(size)
        if size == 0:  # no trailers are sent: the blank line ends the message
            assert await self.reader.readexactly(2) == b"\r\n"
            return b""
        assert await self.reader.readexactly(2) == b"\r\n", "chunk data longer than its size line said"
        return data

    async def chunks(self, timeout: float = 10) -> list[bytes]:
        """Every chunk up to the last one (excluded)."""
        out: list[bytes] = []
        async with asyncio.timeout(timeout):
            while chunk := await self.chunk():
                out.append(chunk)
        return out


@contextlib.asynccontextmanager
async def raw_post(
    port: int, path: str, body: Any, headers: Mapping[str, str], *, host: str = "127.0.0.1"
) -> AsyncIterator[RawResponse]:
    """POST ``body`` as JSON on a fresh connection; yield the response once its head has arrived."""
    content = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(content)}", *(f"{name}: {value}" for name, value in headers.items())]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + content)
        await writer.drain()
        async with asyncio.timeout(10):
            raw_head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        yield RawResponse(int(status_line.split(" ", 2)[1]), fields, reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# -- blocking sockets: what a slow or hostile client does, one byte count at a time -------------------------


@dataclass
class RawReply:
    """A response with a Content-Length, read off a blocking socket."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def as_httpx(self, url: str, request_headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The reply as an httpx response to a GET of ``url`` with ``request_headers``: for the envelope checkers."""
        request = httpx.Request("GET", url, headers=dict(request_headers or {}))
        return httpx.Response(self.status, headers=self.headers, content=self.body, request=request)


def read_reply(sock: socket.socket, timeout: float = 5) -> RawReply:
    """The next response on ``sock`` and not a byte more (pipelined replies stay for the next call): the
    head a byte at a time, then Content-Length bytes of body; fails after ``timeout`` s of silence."""
    sock.settimeout(timeout)
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed before a complete response head: {bytes(head)!r}"
        head += byte
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(fields["content-length"])
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, f"connection closed {length - len(body)} bytes before the end of the body"
        body += chunk
    return RawReply(int(status_line.split(" ", 2)[1]), fields, body)


def closed_by_peer(sock: socket.socket, timeout: float = 5) -> bool:
    """True once the peer closed (or reset) the connection within ``timeout`` s; False if it sent data or stayed open."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (its peak) of process ``pid`` in KiB, from /proc/<pid>/status (Linux)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields
