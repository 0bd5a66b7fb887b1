"""The HTTP server's own limits, against a real ``aura serve`` (as ``make run`` starts it) over raw sockets.

Head size, head and body read time, open connections (issue 10, item 3): each refusal is the
error envelope (CONTRACT §2.6, E1001) with ``Connection: close``, and the connection really
closes; normal requests, keep-alive, pipelining and an SSE stream are untouched.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import open_stream
from tests.support.auth import approver_headers, auth_headers
from tests.support.envelopes import assert_error_envelope
from tests.support.process_server import AuraProcess, logged_aura
from tests.support.raw_http import RawReply, closed_by_peer, memory_kib, open_fds, read_reply

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # `aura serve` as a real subprocess

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
MAX_HEADER_BYTES = 16 * 1024  # the default
LINGER = 2.0  # aura.http.protocol.LINGER_SECONDS: a refused connection's input is read and dropped this long
SLACK = 1.5  # for a loaded machine


@pytest.fixture(scope="module")
def server() -> Iterator[AuraProcess]:
    """The embedded Redis, the default head size and connection limit, half-second read timeouts."""
    with logged_aura(
        None,
        AURA_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        AURA_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    ) as aura:
        yield aura


def pid_of(aura: AuraProcess) -> int:
    assert aura.process is not None
    return aura.process.pid


def connect(aura: AuraProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", aura.port), timeout=5)


def get(path: str = "/health", *headers: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: aura", *headers, "", ""]).encode("latin-1")


def stream_post_head(content_length: int | None, **extra: str) -> bytes:
    """The head of an authenticated ``POST /aura/test/stream`` whose body is ``content_length`` bytes,
    or chunked (``None``)."""
    framing = {"Transfer-Encoding": "chunked"} if content_length is None else {"Content-Length": str(content_length)}
    fields = {**auth_headers(), **extra, "Content-Type": "application/json", "Accept": "text/event-stream", **framing}
    lines = ["POST /aura/test/stream HTTP/1.1", "Host: aura", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def assert_refusal(reply: RawReply, status: int, url: str, sent: dict[str, str] | None = None) -> dict[str, object]:
    """The error envelope, E1001, as JSON, with Connection: close."""
    assert reply.headers["connection"] == "close", reply.headers
    return assert_error_envelope(reply.as_httpx(url, sent), status, "E1001")


def wait_for_fds(pid: int, at_most: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


# -- head size --------------------------------------------------------------------------------------------


def test_a_header_larger_than_the_limit_is_431_and_the_connection_closes(server: AuraProcess) -> None:
    """48 MB of one header field: the 431 comes after the first few hundred KB, and RSS does not grow with it."""
    pid = pid_of(server)
    total = 48 * 1024 * 1024
    chunk = b"a" * 65536
    before = memory_kib(pid)
    sock = connect(server)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: aura\r\nX-Big: ")
        sent = 0
        while sent < 256 * 1024:
            sock.sendall(chunk)
            sent += len(chunk)
        # Answered while the client is still sending: the server did not wait for the 48 MB.
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable, "no answer after 256 KB of header"
        reply = read_reply(sock)
        assert_refusal(reply, 431, f"{server.url}/health")
        answered_after = sent
        started = time.monotonic()
        while sent < total:  # the rest is read and dropped while the server lingers
            sock.sendall(chunk)
            sent += len(chunk)
        sending_seconds = time.monotonic() - started
        assert closed_by_peer(sock), "the server did not close the connection"
    finally:
        sock.close()
    after = memory_kib(pid)
    growth_rss, growth_peak = after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmHWM"]
    print(f"431 after {answered_after} bytes; {sent} bytes sent in all ({sending_seconds:.2f} s after the answer); "
          f"VmRSS {before['VmRSS']} -> {after['VmRSS']} KiB ({growth_rss:+d}), "
          f"VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB ({growth_peak:+d})")
    assert sent == total
    assert growth_peak < 4 * 1024, (before, after)  # the peak, not only what is left: nothing was buffered
    assert growth_rss < 4 * 1024, (before, after)


def test_chunked_trailer_fields_past_the_body_limit_are_413_and_not_buffered(server: AuraProcess) -> None:
    """Trailer fields after a chunked body are header fields, which httptools buffers whole: 48 MB of
    one went unbounded (VmHWM +88 MB) until the body, framing and trailers got a limit of their own."""
    pid = pid_of(server)
    head = stream_post_head(None)
    body = b'{"prompt":"hi"}'
    chunk = b"a" * 65536
    before = memory_kib(pid)
    sock = connect(server)
    sent = 0
    try:
        sock.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer: ")
        while sent < 1024 * 1024:  # twice the body limit: the answer must have come by then
            sock.sendall(chunk)
            sent += len(chunk)
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable, "no answer after 1 MB of trailer"
        reply = read_reply(sock)
        assert reply.headers["connection"] == "close", reply.headers
        assert_error_envelope(reply.as_httpx(f"{server.url}/aura/test/stream"), 413, "E4000",
                              "Request body exceeds 524288 bytes")
        try:
            while sent < 48 * 1024 * 1024:  # read and dropped while the server lingers, then cut
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
    finally:
        sock.close()
    after = memory_kib(pid)
    print(f"413 after at most 1 MB of trailer; {sent} bytes sent; VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB")
    assert after["VmHWM"] - before["VmHWM"] < 4 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 4 * 1024, (before, after)


def test_a_chunked_body_with_a_trailer_within_the_limits_is_served(server: AuraProcess) -> None:
    head = stream_post_head(None)
    body = b'{"prompt":""}'  # read whole, then refused by the app: its answer has a length to read it by
    with connect(server) as sock:
        sock.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer: " + b"t" * 1000 + b"\r\n\r\n")
        reply = read_reply(sock)
    assert_error_envelope(reply.as_httpx(f"{server.url}/aura/test/stream"), 400, "E4000",
                          "prompt must be a non-empty string")


def test_a_head_too_large_pipelined_behind_a_request_lets_its_answer_finish_then_closes(server: AuraProcess) -> None:
    """No 431 in the middle of the answer already owed: that answer, complete, then the close (or, if
    the big head arrived only after the answer was sent, the 431 then)."""
    with connect(server) as sock:
        sock.sendall(get("/health") + b"GET /health HTTP/1.1\r\nHost: aura\r\nX-Big: " + b"b" * 3 * MAX_HEADER_BYTES)
        reply = read_reply(sock)
        assert reply.status == 200, reply
        if reply.headers.get("connection") != "close":  # the second head came in a later read
            assert_refusal(read_reply(sock), 431, f"{server.url}/health")
        assert closed_by_peer(sock)


def test_a_header_within_the_limit_is_served(server: AuraProcess) -> None:
    with connect(server) as sock:
        sock.sendall(get("/health", "X-Padding: " + "p" * (MAX_HEADER_BYTES - 200)))
        reply = read_reply(sock)
    assert reply.status == 200, reply


# -- head read time ---------------------------------------------------------------------------------------


def hold_unfinished(server: AuraProcess, start: bytes, timeout: float, path: str, what: str) -> None:
    """150 connections each send ``start`` and nothing more: each must get the 408 envelope and a FIN within
    ``timeout``, and the server must let go of every socket (file descriptor) shortly after, though
    the client keeps its sockets open."""
    pid = pid_of(server)
    baseline = open_fds(pid)
    socks = [connect(server) for _ in range(150)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(start)
        replies = [read_reply(sock, timeout=timeout + 5) for sock in socks]
        answered = time.monotonic() - started
        for reply in replies:
            assert_refusal(reply, 408, f"{server.url}{path}")
        assert all(closed_by_peer(sock) for sock in socks)
        closed = time.monotonic() - started
        left = wait_for_fds(pid, baseline + 2, LINGER + SLACK + 3)
        released = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    print(f"150 unfinished {what}: all answered 408 after {answered:.2f} s, all half-closed after {closed:.2f} s, "
          f"server fds back to {left} (baseline {baseline}) after {released:.2f} s")
    assert answered < timeout + SLACK
    assert left <= baseline + 2


def test_sockets_holding_unfinished_heads_are_answered_408_and_closed_after_the_header_timeout(
    server: AuraProcess,
) -> None:
    """150 slowloris connections, as in issue 10 item 3 (all still held after 35 s)."""
    start = b"GET /health HTTP/1.1\r\nHost: aura\r\nX-Slow: not the end of"
    hold_unfinished(server, start, HEADER_TIMEOUT, "/health", "heads")


def test_a_head_that_trickles_in_within_the_header_timeout_is_served(server: AuraProcess) -> None:
    with connect(server) as sock:
        for part in (b"GET /health HT", b"TP/1.1\r\nHost: au", b"ra\r\n\r\n"):
            sock.sendall(part)
            time.sleep(HEADER_TIMEOUT / 5)
        assert read_reply(sock).status == 200


def test_an_idle_connection_is_closed_without_an_answer(server: AuraProcess) -> None:
    """Nothing of a request sent (fresh, or after a keep-alive response): closed, no 408, as uvicorn does."""
    with connect(server) as fresh:
        started = time.monotonic()
        assert closed_by_peer(fresh, timeout=HEADER_TIMEOUT + 5)  # recv() == b"": not a byte of an answer
        assert time.monotonic() - started < HEADER_TIMEOUT + SLACK
    with connect(server) as kept:
        kept.sendall(get())
        assert read_reply(kept).status == 200
        started = time.monotonic()
        assert closed_by_peer(kept, timeout=HEADER_TIMEOUT + 5)
        # By the head deadline after the response, not by uvicorn's 5 s keep-alive timer.
        assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


# -- body read time ---------------------------------------------------------------------------------------


def test_a_body_not_complete_within_the_body_timeout_is_408_and_the_connection_closes(server: AuraProcess) -> None:
    """The stream endpoint waits for the body after checking the token: the server cuts it with 408
    (trace headers echoed, as every Aura error does)."""
    trace = {"X-Trace-Id": "trace-408", "X-Gateway-Request-Id": "gw-408"}
    body = b'{"prompt":"Send an email to kim@example.com saying hi"}'
    with connect(server) as sock:
        sock.sendall(stream_post_head(len(body), **trace) + body[:10])
        started = time.monotonic()
        reply = read_reply(sock, timeout=BODY_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        assert_refusal(reply, 408, f"{server.url}/aura/test/stream", trace)
        assert closed_by_peer(sock)
    assert BODY_TIMEOUT - 0.1 < elapsed < BODY_TIMEOUT + SLACK, elapsed


def test_sockets_holding_unfinished_bodies_are_all_cut_after_the_body_timeout(server: AuraProcess) -> None:
    hold_unfinished(server, stream_post_head(1000) + b'{"prompt":', BODY_TIMEOUT, "/aura/test/stream", "bodies")


# -- what still works -------------------------------------------------------------------------------------


def test_keep_alive_and_pipelined_requests_are_still_served(server: AuraProcess) -> None:
    with connect(server) as sock:
        sock.sendall(get("/health") + get("/aura/info") + get("/nope"))  # pipelined
        statuses = [read_reply(sock).status for _ in range(3)]
        time.sleep(HEADER_TIMEOUT / 5)
        sock.sendall(get("/health"))  # the same connection, kept alive
        statuses.append(read_reply(sock).status)
    assert statuses == [200, 200, 404, 200]


def test_a_kept_alive_connection_lives_past_the_header_timeout_while_each_head_comes_in_time(
    server: AuraProcess,
) -> None:
    """The head deadline restarts at the end of each response: six requests over three header timeouts."""
    with connect(server) as sock:
        started = time.monotonic()
        for _ in range(6):
            sock.sendall(get())
            assert read_reply(sock).status == 200
            time.sleep(HEADER_TIMEOUT / 2)
        assert time.monotonic() - started > 2.5 * HEADER_TIMEOUT
        # Then a head begun and left unfinished after a response: 408, counted from that response.
        sock.sendall(get())
        assert read_reply(sock).status == 200
        answered = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: aura\r\n")
        assert_refusal(read_reply(sock, timeout=HEADER_TIMEOUT + 5), 408, f"{server.url}/health")
        assert HEADER_TIMEOUT - 0.1 < time.monotonic() - answered < HEADER_TIMEOUT + SLACK


def test_an_unparsable_request_is_answered_400_with_the_envelope(server: AuraProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert_refusal(read_reply(sock), 400, f"{server.url}/")
        assert closed_by_peer(sock)


async def test_an_sse_stream_outlives_the_read_timeouts_and_completes(server: AuraProcess) -> None:
    """A stream waits for approval longer than both timeouts: the limits are on reading requests only."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with open_stream(client, "Send an email to kim@example.com saying hi") as stream:
            hitl = await stream.until("hitl")
            await asyncio.sleep(2 * max(HEADER_TIMEOUT, BODY_TIMEOUT) + 0.5)
            approval = await client.post(f"/aura/hitl/approve/{hitl.body['requestId']}",
                                         headers=approver_headers(), json={"userId": "1"})
            assert approval.status_code == 200, approval.text
            rest = await stream.rest()
    assert rest[-2].body["to"] == "done" and rest[-1].is_done


# -- connections ------------------------------------------------------------------------------------------


def test_beyond_the_connection_limit_a_connection_gets_503_with_retry_after_and_is_closed() -> None:
    limit = 5
    with logged_aura(None, AURA_HTTP_MAX_CONNECTIONS=str(limit), AURA_HTTP_HEADER_TIMEOUT_SECONDS="30",
                     AURA_HTTP_KEEPALIVE_SECONDS="30") as aura:
        held = [connect(aura) for _ in range(limit)]
        try:
            for sock in held:  # each one served, then kept alive: all five are open on the server
                sock.sendall(get())
                assert read_reply(sock).status == 200
            with connect(aura) as extra:
                extra.sendall(get())  # the client's request is read and dropped, not answered with a reset
                reply = read_reply(extra)
                assert_refusal(reply, 503, f"{aura.url}/health")
                assert reply.headers["retry-after"] == "1"
                assert closed_by_peer(extra)
            held.pop().close()

            def served() -> bool:
                with connect(aura) as sock:
                    sock.sendall(get())
                    try:
                        return read_reply(sock).status == 200
                    except (AssertionError, ConnectionError):  # a 503 before the close was seen
                        return False

            deadline = time.monotonic() + 5
            while not served():
                assert time.monotonic() < deadline, "a freed slot was not given to a new connection"
                time.sleep(LINGER / 4)
        finally:
            for sock in held:
                sock.close()
