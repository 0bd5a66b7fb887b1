"""Log records as JSON lines (``AURA_LOG_FORMAT=json``), with python-json-logger.

Each line: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, and, where there
are any, ``sessionId``, ``requestId``, ``tenantId``, ``trace_id``, ``span_id``
(:mod:`aura.telemetry.log_context`), ``exc_info`` (the traceback) and what a call passes as
``extra``, but not uvicorn's ``color_message`` (the message again, with ANSI colours). Non-ASCII
text is escaped (``\\uXXXX``), as on the SSE wire, so a line survives any stderr encoding.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LEFT_OUT: Final = ("color_message",)


class _JsonLines(JsonFormatter):
    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """The timestamp first, where people reading a line look for it."""
        return {"timestamp": log_data.pop("timestamp"), **log_data}


def json_formatter() -> logging.Formatter:
    return _JsonLines(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        reserved_attrs=[*RESERVED_ATTRS, *LEFT_OUT],
    )
