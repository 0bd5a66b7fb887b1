"""The DWP ``ApiResponse`` JSON envelope (CONTRACT §2.6), byte-compatible with Jackson's output.

Field order follows the Java declaration order and nulls are omitted
(``@JsonInclude(NON_NULL)``); ``timestamp`` is a ``LocalDateTime``: ISO-8601 with no offset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.responses import Response

from aura.errors import ApiError

DEFAULT_SUCCESS_MESSAGE = "요청이 성공적으로 처리되었습니다."
TRACE_HEADER = "x-trace-id"
GATEWAY_REQUEST_HEADER = "x-gateway-request-id"


def envelope(
    *,
    success: bool,
    message: str,
    data: Any = None,
    error_code: str | None = None,
    trace_id: str | None = None,
    gateway_request_id: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "SUCCESS" if success else "ERROR",
        "message": message,
        "data": data,
        "errorCode": error_code,
        "timestamp": datetime.now().isoformat(timespec="microseconds"),
        "success": success,
        "traceId": trace_id,
        "gatewayRequestId": gateway_request_id,
    }
    return {key: value for key, value in fields.items() if value is not None}


def envelope_response(status_code: int, body: Mapping[str, Any]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status_code, media_type="application/json")


def success_response(data: Any = None, *, message: str = DEFAULT_SUCCESS_MESSAGE, status_code: int = 200) -> Response:
    body = envelope(success=True, message=message, data=data)
    return envelope_response(status_code, body)


def error_response(headers: Mapping[str, str], error: ApiError) -> Response:
    """Error envelope; echoes the gateway's trace headers as GlobalExceptionHandler does."""
    body = envelope(
        success=False,
        message=error.message,
        error_code=error.error_code,
        trace_id=headers.get(TRACE_HEADER) or None,
        gateway_request_id=headers.get(GATEWAY_REQUEST_HEADER) or None,
    )
    response = envelope_response(error.status, body)
    response.headers.update(error.headers)
    return response
