"""The JSON line of one record: the fields operators filter on, one object per line."""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura.telemetry import tracing
from aura.telemetry.json_logs import json_formatter
from aura.telemetry.log_context import LogContext, bound


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with the handler ``aura serve`` installs in JSON mode, writing to a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    handler.addFilter(LogContext())
    logger = logging.getLogger("aura.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_has_timestamp_level_logger_and_message(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    before = datetime.datetime.now(datetime.timezone.utc)
    logger.warning("session %s: %d thing(s)", "sess_1", 2)
    (line,) = lines(out)
    assert list(line) == ["timestamp", "level", "logger", "message"]
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "aura.test.json", "session sess_1: 2 thing(s)")
    stamp = datetime.datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == datetime.timedelta(0) and abs((stamp - before).total_seconds()) < 5


def test_a_line_carries_the_session_request_tenant_and_trace_it_was_logged_in(
    logged: tuple[logging.Logger, io.StringIO], spans: InMemorySpanExporter
) -> None:
    logger, out = logged
    with bound(session_id="sess_1", tenant_id="7"), tracing.span("run"):
        with bound(request_id="req_1"):
            logger.info("waiting")
        ids = tracing.current_ids()
    logger.info("after")
    waiting, after = lines(out)
    assert ids is not None
    assert {k: waiting[k] for k in ("sessionId", "requestId", "tenantId", "trace_id", "span_id")} == {
        "sessionId": "sess_1", "requestId": "req_1", "tenantId": "7", "trace_id": ids[0], "span_id": ids[1],
    }
    assert set(after) == {"timestamp", "level", "logger", "message"}


def test_one_record_is_one_line_whatever_its_text(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    logger.info("two\nlines and 한국어 and a \"quote\"")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")
    plain, failed = lines(out)
    assert plain["message"] == "two\nlines and 한국어 and a \"quote\""
    assert "\\ud55c" in out.getvalue()  # escaped: the line survives any stderr encoding
    assert failed["message"] == "it failed" and failed["level"] == "ERROR"
    assert failed["exc_info"].startswith("Traceback") and "RuntimeError: boom" in failed["exc_info"]


def test_uvicorns_coloured_copy_of_the_message_is_left_out(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    logger.info("Uvicorn running on %s", "http://127.0.0.1:9000", extra={"color_message": "\x1b[1m%s\x1b[0m"})
    (line,) = lines(out)
    assert "color_message" not in line and line["message"] == "Uvicorn running on http://127.0.0.1:9000"
