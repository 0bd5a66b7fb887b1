"""What the SSE writer records (as an ASGI app, no server): open streams, heartbeats once sent, slow
clients dropped."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
from starlette.types import Message

from aura.http.sse import HEARTBEAT_FRAME, EventStreamResponse, feed_frames
from aura.metrics import Metrics
from tests.aura.http.test_sse import SEND_TIMEOUT, FakeFeed, Recorder, frame, run
from tests.support.metrics import of

pytestmark = pytest.mark.anyio


async def test_a_stream_is_open_while_it_runs_and_counts_the_heartbeats_it_sent() -> None:
    metrics = Metrics()
    feed = FakeFeed([[(1, frame(1))], [], [(2, frame(2))], []])  # idle twice: two heartbeats
    open_at_each_send: list[float] = []

    async def send(message: Message) -> None:
        open_at_each_send.append(of(metrics).value("aura_sse_streams_open"))

    response = EventStreamResponse(feed_frames(feed.as_feed(), after_seq=0, heartbeat_seconds=1),
                                   send_timeout=SEND_TIMEOUT, metrics=metrics)
    await run(response, send)

    scrape = of(metrics)
    assert open_at_each_send == [1.0] * 7  # start, frame, heartbeat, frame, heartbeat, [DONE], the end
    assert scrape.value("aura_sse_streams_open") == 0
    assert scrape.value("aura_sse_heartbeats_sent_total") == 2
    assert scrape.value("aura_sse_slow_clients_dropped_total") == 0


async def test_a_client_that_stops_reading_is_counted_dropped_and_its_stuck_heartbeat_not_sent() -> None:
    metrics = Metrics()

    async def heartbeats() -> AsyncGenerator[bytes, None]:
        while True:
            yield HEARTBEAT_FRAME

    response = EventStreamResponse(heartbeats(), send_timeout=SEND_TIMEOUT, metrics=metrics)
    send = Recorder(block_at=3)  # start, one heartbeat, then a heartbeat that is never written
    await run(response, send)

    scrape = of(metrics)
    assert response.dropped
    assert scrape.value("aura_sse_slow_clients_dropped_total") == 1
    assert scrape.value("aura_sse_heartbeats_sent_total") == 1
    assert scrape.value("aura_sse_streams_open") == 0
