"""What a log line is about: bound per block, per task, with the current trace."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura.telemetry import tracing
from aura.telemetry.log_context import LogContext, bound, current

pytestmark = pytest.mark.anyio


def record() -> logging.LogRecord:
    return logging.LogRecord("aura.test", logging.INFO, __file__, 1, "hello %s", ("there",), None)


def test_nothing_bound_means_no_fields() -> None:
    assert current() == {}
    plain = record()
    assert LogContext().filter(plain) is True
    assert not {"sessionId", "requestId", "tenantId", "trace_id", "span_id"} & set(vars(plain))


def test_blocks_nest_and_each_gives_back_what_was_before() -> None:
    with bound(session_id="sess_1", tenant_id="7"):
        with bound(request_id="req_1", tenant_id=None):  # None and "" bind nothing, they do not unbind
            assert current() == {"sessionId": "sess_1", "tenantId": "7", "requestId": "req_1"}
        assert current() == {"sessionId": "sess_1", "tenantId": "7"}
    assert current() == {}


def test_the_filter_puts_the_fields_on_the_record_and_drops_nothing() -> None:
    with bound(session_id="sess_1", request_id="req_1", tenant_id="7"):
        tagged = record()
        assert LogContext().filter(tagged) is True
    assert (tagged.sessionId, tagged.requestId, tagged.tenantId) == ("sess_1", "req_1", "7")  # type: ignore[attr-defined]


def test_the_current_trace_and_span_ids_come_with_them(spans: InMemorySpanExporter) -> None:
    with tracing.span("run"):
        ids = tracing.current_ids()
        assert ids is not None
        assert current() == {"trace_id": ids[0], "span_id": ids[1]}


async def test_one_tasks_binding_never_reaches_another() -> None:
    """Each run is a task: its session id must not appear on a line of another session's run."""
    seen: dict[str, dict[str, str]] = {}
    first_bound, second_done = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        with bound(session_id="sess_first"):
            first_bound.set()
            await second_done.wait()
            seen["first"] = current()

    async def second() -> None:
        await first_bound.wait()
        seen["second"] = current()
        second_done.set()

    await asyncio.gather(first(), second())
    assert seen == {"first": {"sessionId": "sess_first"}, "second": {}}
