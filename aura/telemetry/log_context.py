"""What a log line is about: the session, the approval request and the tenant it was logged for.

Bound with :func:`bound` where a session's run or an approval is handled; every record logged
inside, from any module, gets them (and the current trace and span ids) through
:class:`LogContext`, installed on the handler. Context variables: each run is a task of its own,
and a task starts with a copy of its creator's context, so nothing leaks from one run to another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Final

from aura.telemetry import tracing

# The record attributes (and JSON keys): Aura's ids as the wire names them (CONTRACT §3), the trace's
# as OpenTelemetry names them in non-OTLP logs. Not "traceId": in DWP that is the gateway's X-Trace-Id
# (CONTRACT §1.3, the envelope's traceId), another id altogether.
SESSION_ID: Final = "sessionId"
REQUEST_ID: Final = "requestId"
TENANT_ID: Final = "tenantId"
TRACE_ID: Final = "trace_id"
SPAN_ID: Final = "span_id"
FIELDS: Final = (SESSION_ID, REQUEST_ID, TENANT_ID, TRACE_ID, SPAN_ID)

_bound: ContextVar[Mapping[str, str]] = ContextVar("aura_log_context", default={})


class bound(contextlib.AbstractContextManager[None]):  # noqa: N801 - used as a function: `with bound(...)`
    """Inside the block, every log line carries these (on top of what an outer block bound).

    A class with slots rather than a generator: a waiting session sits inside two of these, and a
    suspended generator frame costs about half a KiB (docs/BENCHMARKS.md)."""

    __slots__ = ("_session_id", "_request_id", "_tenant_id", "_token")

    def __init__(self, *, session_id: str | None = None, request_id: str | None = None,
                 tenant_id: str | None = None) -> None:
        self._session_id, self._request_id, self._tenant_id = session_id, request_id, tenant_id
        self._token: Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        fields = dict(_bound.get())
        for key, value in ((SESSION_ID, self._session_id), (REQUEST_ID, self._request_id),
                           (TENANT_ID, self._tenant_id)):
            if value:
                fields[key] = value
        self._token = _bound.set(fields)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _bound.reset(self._token)
            self._token = None


def current() -> dict[str, str]:
    """What a line logged here would carry."""
    fields = dict(_bound.get())
    ids = tracing.current_ids()
    if ids is not None:
        fields[TRACE_ID], fields[SPAN_ID] = ids
    return fields


class LogContext(logging.Filter):
    """Puts :func:`current` on each record (only the fields there are); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            setattr(record, key, value)
        return True
