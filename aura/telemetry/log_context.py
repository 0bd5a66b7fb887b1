"""What a log line is about: the session, the approval request and the tenant it was logged for.

Bound with :func:`bound` where a session's run or an approval is handled; every record logged
inside, from any module, gets them (and the current trace and span ids) through
:class:`LogContext`, installed on the handler. Context variables: each run is a task of its own,
and a task starts with a copy of its creator's context, so nothing leaks from one run to another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
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


@contextlib.contextmanager
def bound(*, session_id: str | None = None, request_id: str | None = None, tenant_id: str | None = None) -> Iterator[None]:
    """Inside the block, every log line carries these (on top of what an outer block bound)."""
    given = {SESSION_ID: session_id, REQUEST_ID: request_id, TENANT_ID: tenant_id}
    token = _bound.set({**_bound.get(), **{key: value for key, value in given.items() if value}})
    try:
        yield
    finally:
        _bound.reset(token)


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
