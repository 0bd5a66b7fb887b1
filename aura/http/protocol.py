"""uvicorn's httptools protocol with the limits it lacks: head size, head and body read time, connections.

uvicorn with httptools reads a request head of any size (httptools buffers every header
field until it ends) and waits for it, or for a body, for ever once its first byte came.
This subclass bounds each of those and answers what it refuses with the ApiResponse error
envelope (CONTRACT §2.6; E1001, as §2.7 has no code for 408, 431 or 503):

- **Head size.** The bytes of a request line and its header fields, blank line included, may
  not pass ``max_header_bytes``: the parser is fed no byte beyond it, and the request is
  answered 431. Per chunk this costs a length comparison, and a slice of the one chunk that
  crosses the limit. (A head that begins inside the chunk that ended the request before it, a
  pipelined one, is counted from the next chunk on: it may pass the limit by that chunk, at
  most the transport's read size.)
- **Body size.** What follows a head, its body with any chunked framing and trailer fields, may
  not pass the app's body limit (``MAX_BODY_BYTES``) plus ``max_header_bytes``: past it the
  request is answered 413 (E4000, as the app's own 413). Without it, trailer fields after a
  chunked body (header fields, which httptools buffers whole) were bounded by nothing but the
  body read time.
- **Head read time.** A head must be complete ``header_timeout_seconds`` after the connection
  was made, or after the end of the previous response (the end of the previous request, if that
  came later): else 408. A connection on which nothing of a new request arrived is closed without
  an answer, as uvicorn closes an idle keep-alive connection; uvicorn's keep-alive timer still
  runs, so the idle time is the shorter of the two.
- **Body read time.** A request body must be complete ``body_timeout_seconds`` after its head,
  counted from when its request is the one being answered (a pipelined request waits, unread,
  behind the responses before it). Else the request is cut: 408 if its response has not begun,
  and the application sees a disconnect.
- **Connections.** A connection made while ``max_connections`` are open is answered 503 with
  ``Retry-After: 1`` at once, without parsing its request. It counts among the open ones until
  it is closed, at most ``LINGER_SECONDS`` later. (Not uvicorn's ``limit_concurrency``, which
  answers plain text.)

Every refusal closes the connection the way a server must when the client may still be
sending: the answer, then a half-close (FIN), then whatever still arrives is read and dropped
(never parsed, never buffered) for at most ``LINGER_SECONDS``, then the socket is closed. So the
client reads the answer instead of a reset. A refusal that comes while earlier pipelined requests
are still being answered (a head too large, an unparsable one) lets those answers finish and
closes after the last; a request whose body is cut after its response began is simply closed.

The limits are per request and per connection, O(1) per chunk: a deadline per connection, moved
only when the connection goes from waiting for a head to waiting for a body or back, at most one
timer behind it, and no re-scan of any buffer. The response path, where SSE frames are written,
is uvicorn's own, untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from aura.config import Settings
from aura.http.body import MAX_BODY_BYTES
from aura.http.envelope import GATEWAY_REQUEST_HEADER, TRACE_HEADER, envelope, envelope_response

if TYPE_CHECKING:
    from asyncio.events import TimerHandle

log = logging.getLogger(__name__)

ERROR_CODE: Final = "E1001"  # CONTRACT §2.7 has no code for 408, 431 or 503 (docs/DECISIONS.md)
LINGER_SECONDS: Final = 2.0  # how long a refused connection's remaining input is read and dropped
LIMIT_LOG_INTERVAL_SECONDS: Final = 10.0  # at most one "connection limit reached" warning per interval

_TRACE_HEADER: Final = TRACE_HEADER.encode("ascii")
_GATEWAY_REQUEST_HEADER: Final = GATEWAY_REQUEST_HEADER.encode("ascii")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            header_timeout_seconds=settings.http_header_timeout_seconds,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            max_connections=settings.http_max_connections,
        )


class _LimitWarning:
    """One warning per interval while connections are refused for the limit, with how many were."""

    def __init__(self) -> None:
        self.refused = 0
        self.logged_at = float("-inf")

    def refused_one(self, limit: int) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self.logged_at >= LIMIT_LOG_INTERVAL_SECONDS:
            log.warning("%d open connections (AURA_HTTP_MAX_CONNECTIONS): refused %d connection(s) with 503",
                        limit, self.refused)
            self.refused = 0
            self.logged_at = now


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. Bind the limits with ``protocol_class``: uvicorn builds protocols itself."""

    limits: ClassVar[HttpLimits]
    _limit_warning: ClassVar[_LimitWarning]
    # Slots, not the instance dict that uvicorn's attributes fill: eight more keys there made it grow
    # to its next size, 0.8 KiB per connection, about 1.8 KiB per waiting session (tracemalloc).
    __slots__ = ("_head_budget", "_body_budget", "_phases", "_head_started", "_refused", "_linger_after_response",
                 "_deadline_kind", "_deadline_at", "_timer", "_timer_at")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Not None while the parser waits for, or reads, a request head: the bytes it may still take.
        self._head_budget: int | None = self.limits.max_header_bytes
        # Not None while the parser reads a request body: the bytes it may still take, framing and
        # chunked trailers included (trailer fields are header fields that httptools buffers whole).
        self._body_budget: int | None = None
        self._phases = 0  # heads and messages completed: a budget's phase ended within it
        self._head_started = False  # a byte of the head being waited for arrived
        self._refused = False  # answered and half-closed: input is dropped until the socket closes
        self._linger_after_response = False  # refused while answering: half-close once the answer is out
        # The deadline the connection is under ("head", "body" or "linger") and when it passes. The one
        # timer is not moved with it: when it fires early it sleeps again until the deadline (below).
        self._deadline_kind: str | None = None
        self._deadline_at = 0.0
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:  # this one included
            self._limit_warning.refused_one(self.limits.max_connections)
            self._refuse(503, "Too many open connections; retry shortly", b"retry-after: 1\r\n")
            return
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline_kind = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped, never parsed
        while True:
            in_head = self._head_budget is not None
            budget = self._head_budget if in_head else self._body_budget
            if budget is None or len(data) <= budget:
                break
            # This chunk would take the head (or the body) past its limit: feed only what the limit allows.
            phases = self._phases
            if in_head:
                self._head_budget = 0
            else:
                self._body_budget = 0
            if budget:
                super().data_received(data[:budget])
            if self._refused or self.transport.is_closing():
                return
            if self._phases == phases:
                if in_head:
                    log.info("refused a request head over %d bytes from %s", self.limits.max_header_bytes,
                             _peer(self.client))
                    self._refuse(431, f"Request header fields exceed {self.limits.max_header_bytes} bytes")
                else:
                    log.info("refused a request body over %d bytes from %s", self._max_body, _peer(self.client))
                    self._refuse(413, f"Request body exceeds {MAX_BODY_BYTES} bytes", error_code="E4000")
                return
            data = data[budget:]  # that phase ended within its limit; the rest belongs to the next one
        # Before feeding: the parser resets the budgets when a head or a request ends.
        if self._head_budget is not None:
            self._head_budget -= len(data)
        elif self._body_budget is not None:
            self._body_budget -= len(data)
        super().data_received(data)
        self._update_deadline()

    @property
    def _max_body(self) -> int:
        """What a request may send after its head: the app's body limit, plus its chunked framing and
        trailer fields (a head's worth)."""
        return MAX_BODY_BYTES + self.limits.max_header_bytes

    # -- parser callbacks (httptools calls them from inside feed_data) ------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True

    def on_headers_complete(self) -> None:
        self._head_budget = None
        self._body_budget = self._max_body
        self._phases += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_budget = self.limits.max_header_bytes
        self._body_budget = None
        self._phases += 1
        self._head_started = False

    # -- uvicorn's hooks ------------------------------------------------------------------------
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._linger_after_response and not self.transport.is_closing():
            self._linger_after_response = False
            self._linger()
            return
        self._update_deadline()

    def send_400_response(self, msg: str) -> None:
        """An unparsable request (uvicorn logged it): the envelope instead of uvicorn's plain text."""
        self._refuse(400, msg)

    # -- deadlines ------------------------------------------------------------------------------
    def _wanted_deadline(self) -> str | None:
        """Which read deadline the connection's state calls for now."""
        if self.transport.is_closing():
            return None
        if self._head_budget is None:  # inside a request body
            return None if self.pipeline else "body"  # a queued request is not being read
        cycle = self.cycle
        return "head" if cycle is None or cycle.response_complete else None  # none while answering

    def _update_deadline(self) -> None:
        if self._refused:
            return  # lingering, or closing after the answers owed
        wanted = self._wanted_deadline()
        if wanted == self._deadline_kind:
            return  # the deadline runs from when this state began
        if wanted == "head":
            self._set_deadline(wanted, self.limits.header_timeout_seconds)
        elif wanted == "body":
            self._set_deadline(wanted, self.limits.body_timeout_seconds)
        else:
            self._deadline_kind = None  # the timer, if any, will find nothing to do

    def _set_deadline(self, kind: str, seconds: float) -> None:
        """A new deadline costs two stores: a timer is made only when none is due by then.

        A keep-alive connection moves its head deadline with every response; making and
        cancelling a TimerHandle each time would cost more than the rest of this class together.
        """
        at = self.loop.time() + seconds
        self._deadline_kind = kind
        self._deadline_at = at
        if self._timer is not None:
            if self._timer_at <= at:
                return  # it fires first, and sleeps again until ``at``
            self._timer.cancel()
        self._timer = self.loop.call_at(at, self._deadline_check)
        self._timer_at = at

    def _deadline_check(self) -> None:
        self._timer = None
        kind = self._deadline_kind
        if kind is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline_at:  # the deadline moved on since the timer was made
            self._timer = self.loop.call_at(self._deadline_at, self._deadline_check)
            self._timer_at = self._deadline_at
            return
        self._deadline_kind = None
        if kind == "linger":
            self.transport.close()
        elif kind == "head":
            if self._head_started:
                log.info("request head from %s not complete within %ss", _peer(self.client),
                         self.limits.header_timeout_seconds)
                self._refuse(408, "Request header not received in time")
            else:  # idle: nothing of a new request came
                self.transport.close()
        elif kind == "body":
            log.info("request body from %s not complete within %ss", _peer(self.client),
                     self.limits.body_timeout_seconds)
            self._refuse(408, "Request body not received in time")

    # -- refusing ---------------------------------------------------------------------------------
    def _refuse(self, status: int, message: str, extra_headers: bytes = b"", *, error_code: str = ERROR_CODE) -> None:
        """Answer ``status`` with the error envelope and close; read no more of the request."""
        self._refused = True
        self._deadline_kind = None
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        trace: list[tuple[bytes, bytes]] = []
        if self._head_budget is None and cycle is not None:  # inside the body of cycle's request
            if cycle.response_complete and not self.pipeline:
                # Already answered (the app's own 413, say): no second answer, and no close under the
                # client's feet either, which would reset the connection before it read the first.
                self._linger()
                return
            if cycle.response_started and not self.pipeline:
                self._linger_after_response = True  # its answer is under way: let it end, then half-close
                return
            if self.pipeline:
                self.transport.close()  # not its turn to be answered: nothing can be said
                return
            cycle.disconnected = True  # the application sees a disconnect; what it sends now is dropped
            cycle.waiting_for_100_continue = False
            cycle.message_event.set()
            trace = self.headers  # the head of the request being cut is complete: echo its trace ids
        elif cycle is not None and not cycle.response_complete:
            # Between requests, with answers still owed: give them, then close after the last one.
            cycle.keep_alive = False
            return
        self.transport.write(_error_response(status, message, error_code, self.server_state.default_headers, trace,
                                             extra_headers))
        self._linger()

    def _linger(self) -> None:
        """Half-close after what was written, then read and drop the client's input for a while."""
        if not self.transport.can_write_eof():
            self.transport.close()  # TLS: no half-close; close() still sends what is buffered
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._set_deadline("linger", LINGER_SECONDS)


def _error_response(status: int, message: str, error_code: str, default_headers: list[tuple[bytes, bytes]],
                    request_headers: list[tuple[bytes, bytes]], extra_headers: bytes) -> bytes:
    request = {name: value for name, value in request_headers if name in (_TRACE_HEADER, _GATEWAY_REQUEST_HEADER)}
    body = bytes(envelope_response(status, envelope(
        success=False,
        message=message,
        error_code=error_code,
        trace_id=request.get(_TRACE_HEADER, b"").decode("latin-1") or None,
        gateway_request_id=request.get(_GATEWAY_REQUEST_HEADER, b"").decode("latin-1") or None,
    )).body)
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
             b"connection: close\r\n", extra_headers, b"\r\n"]
    return b"".join(head) + body


def _peer(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "unknown"


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class bound to ``limits``, for ``uvicorn.Config(http=...)``."""

    class AuraHttpProtocol(LimitedHttpToolsProtocol):
        pass

    AuraHttpProtocol.limits = limits
    AuraHttpProtocol._limit_warning = _LimitWarning()
    return AuraHttpProtocol
