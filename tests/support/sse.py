"""A strict SSE reader for tests: every frame must be exactly what CONTRACT §3.3 allows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx


@dataclass
class Frame:
    raw: bytes
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        """The ``id:`` of an event frame (``{sessionId}.{seq}``, CONTRACT §3.6); fails on a frame without one."""
        assert self.id is not None, f"frame without id: {self.raw!r}"
        return self.id

    @property
    def session_id(self) -> str:
        return self.event_id.rsplit(".", 1)[0]

    @property
    def seq(self) -> int:
        return int(self.event_id.rsplit(".", 1)[1])

    @property
    def is_done(self) -> bool:
        return self.data == "[DONE]"

    @property
    def type(self) -> str | None:
        value = self.payload.get("type")
        return value if isinstance(value, str) else None

    @property
    def body(self) -> dict[str, Any]:
        data = self.payload.get("data", {})
        assert isinstance(data, dict), self.raw
        return data


def parse_frame(raw: bytes) -> Frame:
    """Parse one frame (without its blank line) and assert the contract's framing."""
    assert b"\r" not in raw, f"CR in frame: {raw!r}"
    text = raw.decode("ascii")  # raises on any non-ASCII byte (CONTRACT §3.6 point 3)
    frame = Frame(raw=raw)
    for line in text.split("\n"):
        if line.startswith(":"):
            frame.comment = line[1:].strip()
        elif line.startswith("id: "):
            frame.id = line[4:]
        elif line.startswith("event: "):
            frame.event = line[7:]
        elif line.startswith("data: "):
            assert frame.data is None, f"two data lines: {raw!r}"
            frame.data = line[6:]
        else:
            raise AssertionError(f"unexpected SSE line {line!r} in {raw!r}")
    if frame.data is not None and frame.data != "[DONE]":
        frame.payload = json.loads(frame.data)
        assert json.dumps(frame.payload, separators=(",", ":"), ensure_ascii=True) == frame.data, "not compact JSON"
        assert frame.id is not None, f"event without id: {raw!r}"
        assert frame.payload["type"] == frame.event
        assert frame.payload["eventId"] == frame.id
        assert frame.payload["version"] == "1.0"
        assert isinstance(frame.payload["timestamp"], int)
    return frame


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames: list[Frame] = []
        self._iter = response.aiter_raw()
        self._buffer = b""

    async def next_frame(self) -> Frame:
        while b"\n\n" not in self._buffer:
            chunk = await self._iter.__anext__()
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        frame = parse_frame(raw)
        self.frames.append(frame)
        return frame

    async def events(self) -> AsyncIterator[Frame]:
        """Non-comment frames until [DONE] (included)."""
        while True:
            frame = await self.next_frame()
            if frame.comment is not None and frame.data is None:
                continue
            yield frame
            if frame.is_done:
                return

    async def until(self, type_: str, timeout: float = 10) -> Frame:
        with anyio.fail_after(timeout):
            async for frame in self.events():
                if frame.type == type_:
                    return frame
        raise AssertionError(f"stream ended before a {type_!r} event")

    async def rest(self, timeout: float = 10) -> list[Frame]:
        """Every remaining event frame, up to and including [DONE]."""
        out: list[Frame] = []
        with anyio.fail_after(timeout):
            async for frame in self.events():
                out.append(frame)
        return out

    @property
    def types(self) -> list[str | None]:
        return ["[DONE]" if f.is_done else f.type for f in self.frames if f.comment is None or f.data]
