"""Server-Sent Events on the wire: headers, terminal frames, and the one writer per stream.

The writer sends both events and heartbeats, so frames never interleave; each
event is one ``http.response.body`` message, one write (CONTRACT §3.3). Every
send is bounded: a client that stops reading is dropped after
``send_timeout`` seconds, and the session it followed goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Final

from starlette.responses import StreamingResponse
from starlette.types import Send

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
    """A streaming response whose every send is bounded by ``send_timeout`` seconds."""

    body_iterator: AsyncIterator[bytes]

    def __init__(self, frames: AsyncIterator[bytes], *, send_timeout: float) -> None:
        super().__init__(frames, status_code=200, headers=dict(SSE_HEADERS))
        self.send_timeout = send_timeout
        self.dropped = False  # the client stopped reading and was let go

    async def stream_response(self, send: Send) -> None:
        if not await self._send(send, {"type": "http.response.start", "status": self.status_code,
                                       "headers": self.raw_headers}):
            return
        try:
            async for frame in self.body_iterator:
                if not await self._send(send, {"type": "http.response.body", "body": frame, "more_body": True}):
                    return
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, message: dict[str, object]) -> bool:
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            # The response stays incomplete, so the server closes the connection.
            self.dropped = True
            log.info("dropped an SSE client that read nothing for %g s", self.send_timeout)
            return False
        return True


async def feed_frames(feed: SessionFeed, *, after_seq: int, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """Frames of ``feed`` after ``after_seq``, live, with heartbeats while idle; ends with [DONE].

    When the server drains, the stream ends without [DONE]: the session is not
    over, and the client reconnects with its Last-Event-ID (to another replica).
    """
    cursor = after_seq
    while True:
        frames = await feed.read_after(cursor, timeout=heartbeat_seconds)
        if frames:
            for seq, frame in frames:
                yield frame
                cursor = seq
        elif feed.closed:
            break
        elif feed.draining:
            yield DRAIN_FRAME
            return
        else:
            yield HEARTBEAT_FRAME
    yield DONE_FRAME


async def single_frames(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
    yield DONE_FRAME
