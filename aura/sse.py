"""Server-Sent Events on the wire: headers, terminal frames and the one writer per stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Final

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from aura.feed import SessionFeed

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
    def __init__(self, frames: AsyncIterator[bytes], background: BackgroundTask | None = None) -> None:
        super().__init__(frames, status_code=200, headers=dict(SSE_HEADERS), background=background)


async def feed_frames(feed: SessionFeed, *, after_seq: int, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """Frames of ``feed`` after ``after_seq``, live, with heartbeats while idle; ends with [DONE].

    One writer sends both events and heartbeats, so frames never interleave. Each
    event is yielded on its own: one ``http.response.body`` message, one write.
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
