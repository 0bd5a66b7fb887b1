"""The DWP ApiResponse envelope (CONTRACT §2.6), checked exactly: one checker for errors, one for successes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.support.live_server import let_server_log_its_crash

ISO_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body of a JSON response, which must be an object."""
    assert response.headers["content-type"] == "application/json", (response.headers, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    return body


def assert_local_timestamp(value: Any) -> None:
    """A Java ``LocalDateTime``: ISO-8601 without an offset, in local time (not UTC), and recent."""
    assert isinstance(value, str) and ISO_LOCAL_DATETIME.match(value), value
    stamp = datetime.fromisoformat(value)
    assert stamp.tzinfo is None
    assert abs(datetime.now() - stamp) < timedelta(seconds=30), value


def assert_error_envelope(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    """CONTRACT §2.6: the exact error envelope, Jackson field order, nulls omitted, trace headers echoed.

    ``traceId``/``gatewayRequestId`` are expected exactly when the request carried
    X-Trace-Id/X-Gateway-Request-Id, and must echo them.
    """
    if status < 500:
        let_server_log_its_crash(response)  # an unexpected 5xx: let uvicorn log it before we fail
    assert response.status_code == status, response.text
    body = json_object(response)
    sent = response.request.headers
    expected = ["status", "message", "errorCode", "timestamp", "success"]
    if sent.get("x-trace-id"):
        expected.append("traceId")
    if sent.get("x-gateway-request-id"):
        expected.append("gatewayRequestId")
    assert list(body) == expected, body
    assert body["status"] == "ERROR"
    assert body["success"] is False
    assert body["errorCode"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message, body
    assert_local_timestamp(body["timestamp"])
    if "traceId" in body:
        assert body["traceId"] == sent["x-trace-id"]
    if "gatewayRequestId" in body:
        assert body["gatewayRequestId"] == sent["x-gateway-request-id"]
    return body


def assert_success_envelope(response: httpx.Response, status: int, message: str, *, has_data: bool = True) -> Any:
    """CONTRACT §2.6 success envelope: {"status","message","data","timestamp","success"}, nulls omitted.

    Returns ``data`` (None when ``has_data`` is False and the key is absent).
    """
    let_server_log_its_crash(response)
    assert response.status_code == status, response.text
    body = json_object(response)
    expected = ["status", "message", "data", "timestamp", "success"] if has_data else [
        "status", "message", "timestamp", "success"]
    assert list(body) == expected, body
    assert body["status"] == "SUCCESS" and body["success"] is True
    assert body["message"] == message
    assert_local_timestamp(body["timestamp"])
    return body.get("data")
