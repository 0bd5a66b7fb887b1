"""Server-Sent Events on the wire: headers, terminal frames, and the one writer per stream.

The writer sends both events and heartbeats, so frames never interleave; each
event is one ``http.response.body`` message, one write (CONTRACT §3.3). Every
send is bounded: a client that stops reading is dropped after
``send_timeout`` seconds, and the session it followed goes on.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, ClassVar, Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from aura.metrics import Metrics, unserved
from aura.session.feed import SessionFeed

log = logging.getLogger(__name__)

# CONTRACT §3.2: exact values; the gateway only fills them when absent. The
# content type is set as a header so Starlette does not append "; charset=utf-8".
SSE_HEADERS: Final[Mapping[str, str]] = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}
DONE_FRAME: Final = b"data: [DONE]\n\n"  # CONTRACT §3.3: ends every stream
# A comment the gateway passes untouched because it contains "id:" (CONTRACT §3.6 point 4, §3.7).
HEARTBEAT_FRAME: Final = b": keepalive id:-\n\n"
# Ends a stream when the server shuts down, without [DONE]; "id:" keeps the gateway out of it.
DRAIN_FRAME: Final = b": server draining, reconnect with Last-Event-ID id:-\n\n"


class EventStreamResponse(StreamingResponse):
    """A streaming response whose every send is bounded by ``send_timeout`` seconds.

    The bound costs one timestamp per send: the process's :class:`SendWatchdog`
    lets go of a stream whose send has made no progress for ``send_timeout``
    (a timer per send cost more than the rest of the send, docs/BENCHMARKS.md).
    """

    body_iterator: AsyncGenerator[bytes, None]

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        *,
        send_timeout: float,
        on_close: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(frames, status_code=200, headers=dict(SSE_HEADERS))
        self.send_timeout = send_timeout
        self._metrics = metrics if metrics is not None else unserved()
        self._on_close = on_close  # e.g. gives back the stream's place (StreamSlot.release)
        self.dropped = False  # the client stopped reading and was let go
        self.sending_since: float | None = None  # loop time at which the pending send began
        self.disconnected = False  # the client went away
        self._task: asyncio.Task[Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream in this task; one plain task waits for the client's disconnect and cancels it.

        Starlette's own way (an anyio task group around both, for servers older than
        ASGI 2.4, as uvicorn is) cost a waiting session more than the stream itself.
        """
        self._task = asyncio.current_task()
        try:
            listener = asyncio.get_running_loop().create_task(self._until_disconnect(receive))
            try:
                await self.stream_response(send)
            finally:
                listener.cancel()
        finally:
            if self._on_close is not None:
                self._on_close()

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        if self._task is not None:
            self._task.cancel()

    async def stream_response(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = asyncio.current_task()
        watchdog = SendWatchdog.of(loop)
        watchdog.watch(self)
        metrics = self._metrics
        metrics.stream_opened()
        try:
            self.sending_since = loop.time()
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            self.sending_since = None  # waiting for the first frame is not a stuck send
            frames = self.body_iterator
            while True:
                # Not `async for`: its variable would hold the last frame through every wait for the
                # next, and thousands of streams wait at once (memory per waiting session, issue 8).
                try:
                    message = {"type": "http.response.body", "body": await anext(frames), "more_body": True}
                except StopAsyncIteration:
                    break
                self.sending_since = loop.time()
                await send(message)
                self.sending_since = None
                if message["body"] is HEARTBEAT_FRAME:
                    metrics.heartbeat_sent()
                del message
                if self.disconnected or self.dropped:
                    return  # a cancel that a Redis call swallowed must not keep the stream going
            self.sending_since = loop.time()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not (self.dropped or self.disconnected):
                raise
            if self._task is not None and self._task.uncancel() > 0:
                raise  # a shutdown's cancel came too: it is not ours to swallow
            if self.dropped:  # the response stays incomplete, so the server closes the connection
                log.info("dropped an SSE client that read nothing for %g s", self.send_timeout)
        finally:
            metrics.stream_closed()
            self.sending_since = None
            watchdog.unwatch(self)
            await self.body_iterator.aclose()

    def expire(self) -> None:
        """Let go of a client whose send made no progress for ``send_timeout``: its session goes on."""
        if not self.dropped and self._task is not None:
            self.dropped = True
            self._metrics.slow_client_dropped()
            self._task.cancel()


class SendWatchdog:
    """One timer per event loop for every open stream's sends."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SendWatchdog]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._streams: set[EventStreamResponse] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> SendWatchdog:
        watchdog = cls._by_loop.get(loop)
        if watchdog is None:
            watchdog = cls._by_loop[loop] = cls()
        return watchdog

    def watch(self, response: EventStreamResponse) -> None:
        self._streams.add(response)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="aura-sse-watchdog")

    def unwatch(self, response: EventStreamResponse) -> None:
        self._streams.discard(response)

    async def _run(self) -> None:
        """Check the sends in progress a few times per bound; stop when no stream is open."""
        loop = asyncio.get_running_loop()
        while self._streams:
            interval = min(response.send_timeout for response in self._streams) / 4
            await asyncio.sleep(min(interval, 1.0))
            now = loop.time()
            for response in list(self._streams):
                since = response.sending_since
                if since is not None and now - since > response.send_timeout:
                    response.expire()


async def feed_frames(feed: SessionFeed, *, after_seq: int, heartbeat_seconds: float) -> AsyncGenerator[bytes, None]:
    """Frames of ``feed`` after ``after_seq``, live, with heartbeats while idle; ends with [DONE].

    When the server drains, the stream ends without [DONE]: the session is not
    over, and the client reconnects with its Last-Event-ID (to another replica).
    """
    cursor = after_seq
    try:
        while True:
            frames = await feed.read_after(cursor, timeout=heartbeat_seconds)
            if frames:
                for seq, frame in frames:
                    yield frame
                    cursor = seq
                del frames, frame  # a waiting stream keeps none of the frames it sent
                continue
            if feed.closed:
                break
            elif feed.draining:
                yield DRAIN_FRAME
                return
            else:
                yield HEARTBEAT_FRAME
        yield DONE_FRAME
    finally:
        feed.close()


async def single_frames(*frames: bytes) -> AsyncGenerator[bytes, None]:
    for frame in frames:
        yield frame
    yield DONE_FRAME
