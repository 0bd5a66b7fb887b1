"""The SSE writer as an ASGI app (no server): one message per frame, the headers, bounded sends; framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest
from starlette.types import Message, Receive, Scope, Send

from aura.http.sse import DONE_FRAME, DRAIN_FRAME, HEARTBEAT_FRAME, EventStreamResponse, feed_frames, single_frames
from aura.ids import EventId, SessionId
from aura.session import events
from aura.session.events import MAX_CONTENT_CHARS, MAX_RESULT_CHARS
from aura.session.feed import SessionFeed
from aura.session.plan import PlanStep
from aura.session.replay import Frame

pytestmark = pytest.mark.anyio

BOUND_SECONDS = 5.0  # a bound for every test's waits; CI is a loaded 2-core machine
SEND_TIMEOUT = 0.2


def frame(n: int) -> bytes:
    sid = "sess_0123456789abcdef01234567"
    return events.encode_frame(f"{sid}.{n}", "content", {"type": "content", "data": {"content": f"piece {n}"}})


async def from_list(frames: list[bytes]) -> AsyncGenerator[bytes, None]:
    for item in frames:
        yield item


def scope(spec_version: str | None) -> Scope:
    asgi = {"version": "3.0"} if spec_version is None else {"version": "3.0", "spec_version": spec_version}
    return {"type": "http", "asgi": asgi, "method": "GET", "path": "/stream", "headers": []}


async def never_disconnects() -> Message:
    await asyncio.Event().wait()  # the client stays connected
    raise AssertionError("unreachable")


class Recorder:
    """An ASGI ``send`` that keeps every message; ``block_at`` (1-based) makes that send hang forever."""

    def __init__(self, block_at: int | None = None) -> None:
        self.messages: list[Message] = []
        self.block_at = block_at
        self.blocked = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        if self.block_at is not None and len(self.messages) + 1 == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()  # a client that stopped reading: the write never completes
        self.messages.append(message)

    @property
    def bodies(self) -> list[Message]:
        return [m for m in self.messages if m["type"] == "http.response.body"]


async def run(response: EventStreamResponse, send: Send, *, spec_version: str | None = "2.4",
              receive: Receive = never_disconnects) -> float:
    """Run the response as the ASGI server would; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(BOUND_SECONDS):
        await response(scope(spec_version), receive, send)
    return loop.time() - started


SPEC_VERSIONS = pytest.mark.parametrize("spec_version", ["2.4", None], ids=["asgi-2.4", "asgi-2.0-disconnect-listener"])


# -- the writer ------------------------------------------------------------------------------------
@SPEC_VERSIONS
async def test_each_frame_is_exactly_one_body_message_even_in_a_burst(spec_version: str | None) -> None:
    burst = [frame(n) for n in range(1, 6)]
    send = Recorder()
    await run(EventStreamResponse(from_list(burst), send_timeout=SEND_TIMEOUT), send, spec_version=spec_version)

    assert [m["type"] for m in send.messages] == ["http.response.start"] + ["http.response.body"] * 6
    assert [m["body"] for m in send.bodies[:-1]] == burst  # 5 events, 5 messages, never joined
    assert all(m["more_body"] is True for m in send.bodies[:-1])
    assert send.bodies[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_the_headers_are_exactly_the_four_of_the_contract() -> None:
    send = Recorder()
    await run(EventStreamResponse(single_frames(frame(1)), send_timeout=SEND_TIMEOUT), send)
    start = send.messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert sorted(start["headers"]) == sorted(
        [
            (b"content-type", b"text/event-stream"),  # no "; charset=utf-8"
            (b"cache-control", b"no-cache"),
            (b"connection", b"keep-alive"),
            (b"x-accel-buffering", b"no"),
        ]
    )


async def test_a_complete_stream_is_not_dropped_and_its_frames_are_closed() -> None:
    closed = asyncio.Event()

    async def frames() -> AsyncGenerator[bytes, None]:
        try:
            yield frame(1)
        finally:
            closed.set()

    response = EventStreamResponse(frames(), send_timeout=SEND_TIMEOUT)
    send = Recorder()
    await run(response, send)
    assert not response.dropped
    assert closed.is_set()
    assert [m["body"] for m in send.bodies] == [frame(1), b""]


@SPEC_VERSIONS
async def test_a_client_that_stops_reading_is_dropped_after_send_timeout_and_the_frames_are_closed(
    spec_version: str | None,
) -> None:
    produced: list[int] = []
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[bytes, None]:
        try:
            n = 0
            while True:  # like a live feed: heartbeats forever
                n += 1
                produced.append(n)
                yield frame(n)
        finally:
            closed.set()

    response = EventStreamResponse(endless(), send_timeout=SEND_TIMEOUT)
    send = Recorder(block_at=3)  # start, frame 1, then frame 2 is never written
    elapsed = await run(response, send, spec_version=spec_version)

    assert send.blocked.is_set()
    assert SEND_TIMEOUT * 0.9 <= elapsed < 3.0  # about send_timeout, not forever
    assert response.dropped
    assert closed.is_set()  # the generator's `finally` ran
    assert produced == [1, 2]  # nothing was read from the feed after the stuck write
    assert [m["body"] for m in send.bodies] == [frame(1)]  # no final message: the response stays incomplete


async def test_a_client_that_never_reads_the_start_is_dropped_too() -> None:
    response = EventStreamResponse(from_list([frame(1)]), send_timeout=SEND_TIMEOUT)
    send = Recorder(block_at=1)
    elapsed = await run(response, send)
    assert response.dropped
    assert elapsed < 3.0
    assert send.messages == []


# -- frames of a feed -------------------------------------------------------------------------------
class FakeFeed:
    """What feed_frames reads: ``read_after``, ``closed``, ``draining``. Answers from a script, then ends."""

    def __init__(self, script: list[list[Frame]], *, then: str = "closed") -> None:
        self.script = list(script)
        self.then = then
        self.closed = False
        self.draining = False
        self.reads: list[tuple[int, float]] = []  # (after seq, timeout) of each read
        self.unfollowed = False

    def close(self) -> None:
        self.unfollowed = True

    async def read_after(self, seq: int, *, timeout: float) -> list[Frame]:
        self.reads.append((seq, timeout))
        if self.script:
            return self.script.pop(0)
        if self.then == "closed":
            self.closed = True
        else:
            self.draining = True
        return []

    def as_feed(self) -> SessionFeed:
        return cast(SessionFeed, self)


async def collect(frames: AsyncIterator[bytes]) -> list[bytes]:
    async with asyncio.timeout(BOUND_SECONDS):
        return [item async for item in frames]


async def test_waiting_longer_than_the_send_bound_for_the_first_frame_is_not_a_stuck_send() -> None:
    """Regression: the bound ran from the start line's send until the first frame, so a stream that
    waited (a session waiting for a human, heartbeats slower than the bound) was dropped."""

    async def slow_first() -> AsyncGenerator[bytes, None]:
        await asyncio.sleep(SEND_TIMEOUT * 4)
        yield frame(1)

    recorder = Recorder()
    response = EventStreamResponse(slow_first(), send_timeout=SEND_TIMEOUT)
    await run(response, recorder)
    assert not response.dropped
    assert [m["body"] for m in recorder.bodies] == [frame(1), b""]


async def test_a_client_that_disconnects_ends_the_stream_at_once_and_closes_the_frames() -> None:
    """The writer's own disconnect listener (not Starlette's task group): a follower is not kept after its client left."""
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[bytes, None]:
        try:
            yield frame(1)
            await asyncio.Event().wait()  # a session waiting for a human: nothing more to send for minutes
            yield frame(2)
        finally:
            closed.set()

    recorder = Recorder()
    disconnect = asyncio.Event()

    async def receive() -> Message:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    response = EventStreamResponse(endless(), send_timeout=60)
    running = asyncio.ensure_future(run(response, recorder, receive=receive))
    async with asyncio.timeout(BOUND_SECONDS):
        while len(recorder.bodies) < 1:
            await asyncio.sleep(0.01)
    disconnect.set()
    elapsed = await running
    assert closed.is_set() and response.disconnected and not response.dropped
    assert [m["body"] for m in recorder.bodies] == [frame(1)]
    assert elapsed < BOUND_SECONDS


async def test_feed_frames_sends_heartbeats_while_idle_frames_in_order_and_done_at_the_end() -> None:
    feed = FakeFeed([[], [(1, frame(1)), (2, frame(2))], [], [], [(3, frame(3))]])
    out = await collect(feed_frames(feed.as_feed(), after_seq=0, heartbeat_seconds=15))
    assert out == [HEARTBEAT_FRAME, frame(1), frame(2), HEARTBEAT_FRAME, HEARTBEAT_FRAME, frame(3), DONE_FRAME]
    assert feed.reads == [(0, 15), (0, 15), (2, 15), (2, 15), (2, 15), (3, 15)]
    assert feed.unfollowed  # the stream is over: the replica stops hearing this log grow


async def test_feed_frames_starts_after_the_cursor_it_is_given() -> None:
    feed = FakeFeed([[(8, frame(8))]])
    out = await collect(feed_frames(feed.as_feed(), after_seq=7, heartbeat_seconds=1))
    assert out == [frame(8), DONE_FRAME]
    assert [seq for seq, _ in feed.reads] == [7, 8]


async def test_feed_frames_of_an_ended_log_is_just_done() -> None:
    out = await collect(feed_frames(FakeFeed([]).as_feed(), after_seq=3, heartbeat_seconds=1))
    assert out == [DONE_FRAME]


async def test_feed_frames_ends_with_the_drain_frame_and_no_done_when_the_server_drains() -> None:
    feed = FakeFeed([[(1, frame(1))], []], then="draining")
    out = await collect(feed_frames(feed.as_feed(), after_seq=0, heartbeat_seconds=1))
    assert out == [frame(1), HEARTBEAT_FRAME, DRAIN_FRAME]
    assert DONE_FRAME not in out
    assert feed.unfollowed


async def test_an_ended_log_wins_over_draining() -> None:
    feed = FakeFeed([])
    feed.draining = True
    out = await collect(feed_frames(feed.as_feed(), after_seq=0, heartbeat_seconds=1))
    assert out == [DONE_FRAME]


async def test_a_feed_through_the_writer_is_one_message_per_frame_heartbeats_included() -> None:
    feed = FakeFeed([[(1, frame(1)), (2, frame(2)), (3, frame(3))], [], [(4, frame(4))]])
    send = Recorder()
    response = EventStreamResponse(feed_frames(feed.as_feed(), after_seq=0, heartbeat_seconds=1),
                                   send_timeout=SEND_TIMEOUT)
    await run(response, send)
    assert [m["body"] for m in send.bodies] == [frame(1), frame(2), frame(3), HEARTBEAT_FRAME, frame(4), DONE_FRAME,
                                                b""]


def test_the_terminal_frames_are_what_the_contract_says() -> None:
    assert DONE_FRAME == b"data: [DONE]\n\n"
    assert HEARTBEAT_FRAME.startswith(b":") and b"id:" in HEARTBEAT_FRAME and HEARTBEAT_FRAME.endswith(b"\n\n")
    assert DRAIN_FRAME.startswith(b":") and b"id:" in DRAIN_FRAME and DRAIN_FRAME.endswith(b"\n\n")
    assert b"[DONE]" not in DRAIN_FRAME


async def test_single_frames_ends_with_done() -> None:
    assert await collect(single_frames(frame(1), frame(2))) == [frame(1), frame(2), DONE_FRAME]


# -- events.encode_frame, pieces, clip ---------------------------------------------------------------
def test_encode_frame_is_id_event_and_one_line_of_ascii_json_then_a_blank_line() -> None:
    payload = {"type": "content", "data": {"content": "안녕 ☕ é\nline two", "n": 1}}
    raw = events.encode_frame("sess_x.1", "content", payload)
    raw.decode("ascii")  # ASCII only: the gateway may split a multi-byte character
    assert raw.endswith(b"\n\n") and not raw.endswith(b"\n\n\n")
    lines = raw.decode("ascii").split("\n")
    assert lines[:2] == ["id: sess_x.1", "event: content"]
    assert lines[2].startswith("data: {") and not lines[2].startswith("data:  ")
    assert lines[3:] == ["", ""]  # the data is one line, then the blank line
    assert json.loads(lines[2][len("data: "):]) == payload
    assert "\\uc548\\ub155" in lines[2] and "\\n" in lines[2]
    assert ", " not in lines[2] and ": " not in lines[2][len("data: "):]  # compact


def test_every_event_frame_is_ascii_even_with_non_ascii_content() -> None:
    event = events.AgentEvent.create(EventId(SessionId("sess_0123456789abcdef01234567"), 3),
                                     *events.content("회의는 3시 🙂"))
    assert event.frame.isascii()
    data = json.loads(event.frame.decode("ascii").split("\n")[2][len("data: "):])
    assert data["data"]["content"] == "회의는 3시 🙂"


@pytest.mark.parametrize("length", [0, 1, MAX_CONTENT_CHARS - 1, MAX_CONTENT_CHARS, MAX_CONTENT_CHARS + 1, 3500])
def test_pieces_splits_at_the_limit_and_joins_back_to_the_original(length: int) -> None:
    text = "".join("가a\n🙂"[n % 4] for n in range(length))
    parts = events.pieces(text)
    assert "".join(parts) == text
    assert all(len(p) == MAX_CONTENT_CHARS for p in parts[:-1])
    assert all(0 < len(p) <= MAX_CONTENT_CHARS for p in parts)
    assert len(parts) == -(-length // MAX_CONTENT_CHARS)  # ceil


def test_pieces_splits_2001_chars_in_three() -> None:
    assert [len(p) for p in events.pieces("x" * 2001)] == [1000, 1000, 1]
    assert MAX_CONTENT_CHARS == 1000


@pytest.mark.parametrize(
    ("text", "clipped"),
    [("", ""), ("short", "short"), ("y" * MAX_RESULT_CHARS, "y" * MAX_RESULT_CHARS),
     ("z" * (MAX_RESULT_CHARS + 1), "z" * MAX_RESULT_CHARS + "...")],
)
def test_clip_keeps_short_text_and_cuts_long_text_with_an_ellipsis(text: str, clipped: str) -> None:
    assert events.clip(text) == clipped


def test_tool_results_and_errors_are_clipped() -> None:
    step = PlanStep("s1", "t", "d", tool="mail")
    _, data = events.tool_execution(step, "completed", result="r" * 5000)
    assert data["result"] == "r" * MAX_RESULT_CHARS + "..."
    _, failed = events.tool_execution(step, "failed", error="e" * 5000)
    assert len(failed["error"]) == MAX_RESULT_CHARS + 3

