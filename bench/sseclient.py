"""The load generator's client: HTTP/1.1 POST + SSE over raw asyncio protocols.

httpx costs far too much per connection for 10,000 streams; this parses just what
Aura and the floor send (status line, headers, chunked or fixed-length bodies,
SSE frames separated by a blank line) and timestamps every frame in
``data_received``, before any other work, with ``time.perf_counter``.

A session succeeds when the response is 200, ends with ``data: [DONE]`` and a
complete chunked body, carries no ``error`` event, and its last ``state`` event
went to ``done`` (for HITL sessions: after a ``hitl`` event).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

DONE: Final = b"data: [DONE]"
_EVENT_MARK: Final = b"\nevent: "
_DATA_MARK: Final = b"\ndata: "
_PARSED_TYPES: Final = frozenset({b"state", b"hitl", b"error"})

_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _FIXED, _IDLE = range(6)


@dataclass
class Counters:
    """Totals over every session of a scenario, read at window boundaries."""

    frames: int = 0  # event frames and [DONE]
    heartbeats: int = 0
    body_bytes: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.note(reason)

    def note(self, reason: str) -> None:
        """Record a problem without counting a failed session (the session's own end counts it)."""
        self.failures[reason] = self.failures.get(reason, 0) + 1


class Session:
    """One agent session as the client sees it."""

    __slots__ = (
        "kind", "counters", "on_hitl", "t_start", "t_first", "t_hitl", "t_end", "status", "frames", "heartbeats",
        "bytes", "done_seen", "final_state", "error", "session_id", "request_id", "finished", "_next_frame",
        "_ended", "tag",
    )

    def __init__(self, kind: str, counters: Counters, on_hitl: Callable[[Session], None] | None = None) -> None:
        self.kind = kind  # "plain" or "hitl"
        self.counters = counters
        self.on_hitl = on_hitl
        self.t_start = 0.0
        self.t_first = 0.0
        self.t_hitl = 0.0
        self.t_end = 0.0
        self.status = 0
        self.frames = 0
        self.heartbeats = 0
        self.bytes = 0
        self.done_seen = False
        self.final_state: str | None = None
        self.error: str | None = None
        self.session_id: str | None = None
        self.request_id: str | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._next_frame: asyncio.Future[float] | None = None
        self._ended = False
        self.tag = 0

    @property
    def ok(self) -> bool:
        return self._ended and self.error is None

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start

    def arm_next_frame(self) -> asyncio.Future[float]:
        """A future resolved with the arrival time of the next event frame (heartbeats skipped)."""
        self._next_frame = asyncio.get_running_loop().create_future()
        return self._next_frame

    # -- called by the connection -------------------------------------------------
    def on_frame(self, raw: bytes, now: float) -> None:
        if raw[:1] == b":":
            self.heartbeats += 1
            self.counters.heartbeats += 1
            return
        self.frames += 1
        self.counters.frames += 1
        if self.t_first == 0.0:
            self.t_first = now
        waiter = self._next_frame
        if waiter is not None:
            self._next_frame = None
            if not waiter.done():
                waiter.set_result(now)
        if raw == DONE:
            self.done_seen = True
            return
        start = raw.find(_EVENT_MARK)
        if start < 0:
            self.error = self.error or "frame without event line"
            return
        end = raw.find(b"\n", start + 8)
        event_type = raw[start + 8 : end]
        if event_type not in _PARSED_TYPES:
            return
        payload: dict[str, Any] = json.loads(raw[raw.find(_DATA_MARK) + 7 :])
        data = payload.get("data") or {}
        if event_type == b"state":
            self.final_state = data.get("to")
        elif event_type == b"hitl":
            self.t_hitl = now
            self.request_id = data.get("requestId")
            self.session_id = data.get("sessionId")
            if self.on_hitl is not None:
                self.on_hitl(self)
        else:
            self.error = self.error or f"error event: {data.get('errorType')} {data.get('reason')}"

    def end(self, now: float, problem: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self.t_end = now
        if problem is not None:
            self.error = self.error or problem
        elif self.status != 200:
            self.error = self.error or f"HTTP {self.status}"
        elif not self.done_seen:
            self.error = self.error or "stream ended without [DONE]"
        elif self.final_state != "done":
            self.error = self.error or f"final state {self.final_state!r}, not 'done'"
        elif self.kind == "hitl" and self.request_id is None:
            self.error = self.error or "no hitl event"
        if self.error is None:
            self.counters.succeeded += 1
        else:
            self.counters.fail(_reason_class(self.error))
        if self._next_frame is not None and not self._next_frame.done():
            self._next_frame.set_exception(ConnectionError(self.error or "stream ended"))
            self._next_frame.exception()  # mark retrieved
        if not self.finished.done():
            self.finished.set_result(None)


def _reason_class(error: str) -> str:
    return error if len(error) <= 60 else error[:57] + "..."


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one session at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.session: Session | None = None
        self.reusable = False
        self.last_used = 0.0
        self._buf = bytearray()
        self._sse = bytearray()
        self._phase = _IDLE
        self._remaining = 0

    # -- asyncio.Protocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.reusable = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        session = self.session
        if session is None:
            return  # nothing expected: ignore (the server may close an idle connection)
        session.bytes += len(data)
        session.counters.body_bytes += len(data)
        try:
            if self._phase == _CHUNK_SIZE and not self._buf and not self._sse:
                # Fast path: exactly one chunk holding exactly one frame (Aura writes one frame per chunk).
                head_end = data.find(b"\r\n")
                if head_end > 0:
                    size = int(data[:head_end], 16)
                    if size > 0 and len(data) == head_end + 2 + size + 2:
                        body = data[head_end + 2 : head_end + 2 + size]
                        if body.endswith(b"\n\n") and body.find(b"\n\n") == size - 2:
                            session.on_frame(body[:-2], now)
                            return
            self._buf += data
            self._parse(now)
        except (ValueError, IndexError, KeyError) as exc:
            self._fail(now, f"unparseable response ({type(exc).__name__})")

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.session is not None:
            self._fail(time.perf_counter(), "connection lost")
        if not self.closed.done():
            self.closed.set_result(None)

    # -- sessions --------------------------------------------------------------------
    def send(self, request: bytes, session: Session) -> None:
        if self.transport is None or not self.reusable:
            raise ConnectionError("connection is not usable")
        self.session = session
        self._phase = _HEAD
        self._buf.clear()
        self._sse.clear()
        session.t_start = time.perf_counter()
        session.counters.started += 1
        self.transport.write(request)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, now: float, problem: str) -> None:
        session = self.session
        self.session = None
        self._phase = _IDLE
        if session is not None:
            session.end(now, problem)
        self.close()

    def _finish(self, now: float) -> None:
        session = self.session
        self.session = None
        self._phase = _IDLE
        self.last_used = now
        if session is not None:
            if self._sse:
                session.error = session.error or "trailing bytes after the last frame"
            session.end(now)
        if not self.reusable:
            self.close()

    def _sse_data(self, data: bytes, now: float) -> None:
        session = self.session
        assert session is not None
        self._sse += data
        while True:
            cut = self._sse.find(b"\n\n")
            if cut < 0:
                return
            frame = bytes(self._sse[:cut])
            del self._sse[: cut + 2]
            session.on_frame(frame, now)

    def _parse(self, now: float) -> None:
        buf = self._buf
        while self.session is not None:
            phase = self._phase
            if phase == _HEAD:
                cut = buf.find(b"\r\n\r\n")
                if cut < 0:
                    return
                head = bytes(buf[:cut]).decode("latin-1").split("\r\n")
                del buf[: cut + 4]
                status_parts = head[0].split(" ", 2)
                self.session.status = int(status_parts[1])
                headers: dict[str, str] = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get("connection", "").lower() == "close":
                    self.reusable = False
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self._phase = _CHUNK_SIZE
                else:
                    self._remaining = int(headers.get("content-length", "0"))
                    self._phase = _FIXED
            elif phase == _CHUNK_SIZE:
                cut = buf.find(b"\r\n")
                if cut < 0:
                    return
                size = int(bytes(buf[:cut]).split(b";", 1)[0], 16)
                del buf[: cut + 2]
                if size == 0:
                    self._phase = _TRAILER
                else:
                    self._remaining = size
                    self._phase = _CHUNK_DATA
            elif phase == _CHUNK_DATA:
                if len(buf) < self._remaining + 2:
                    return
                data = bytes(buf[: self._remaining])
                del buf[: self._remaining + 2]
                self._phase = _CHUNK_SIZE
                self._sse_data(data, now)
            elif phase == _TRAILER:
                cut = buf.find(b"\r\n")
                if cut < 0:
                    return
                del buf[: cut + 2]
                if cut == 0:
                    self._finish(now)
                    return
            elif phase == _FIXED:
                if len(buf) < self._remaining:
                    return
                body = bytes(buf[: self._remaining])
                del buf[: self._remaining]
                if self.session.status == 200:
                    self._sse_data(body, now)
                else:
                    self.session.error = f"HTTP {self.session.status}: {body[:120]!r}"
                self._finish(now)
                return
            else:
                return


@dataclass(frozen=True)
class Endpoint:
    """Where to send sessions and how: the request bytes are built once per prompt."""

    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]

    def request(self, prompt: str) -> bytes:
        body = json.dumps({"prompt": prompt, "context": {"activeApp": "bench"}}, separators=(",", ":")).encode()
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Accept: text/event-stream",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def connect(endpoint: Endpoint, timeout: float = 10.0) -> Connection:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(Connection, endpoint.host, endpoint.port)
    return protocol


class Client:
    """A client that runs sessions one after another, reusing its connection when it can."""

    # uvicorn closes idle keep-alive connections after 5 s; never race it.
    IDLE_LIMIT: Final = 3.0

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.conn: Connection | None = None

    async def start(self, request: bytes, session: Session) -> None:
        """Open (or reuse) the connection and send the request; the session then runs by itself."""
        conn = self.conn
        if conn is None or not conn.reusable or time.perf_counter() - conn.last_used > self.IDLE_LIMIT:
            if conn is not None:
                conn.close()
            try:
                conn = await connect(self.endpoint)
            except (OSError, TimeoutError) as exc:
                session.counters.started += 1
                session.end(time.perf_counter(), f"connect failed: {type(exc).__name__}")
                raise
            self.conn = conn
        conn.send(request, session)

    async def run(self, request: bytes, session: Session, timeout: float) -> Session:
        try:
            await self.start(request, session)
        except (OSError, TimeoutError):
            return session
        await wait_session(session, timeout)
        if self.conn is not None and self.conn.session is session:  # timed out: drop the connection
            self.conn.close()
            self.conn = None
        return session

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


async def wait_session(session: Session, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(session.finished)
    except TimeoutError:
        session.end(time.perf_counter(), f"no end within {timeout:g} s")
