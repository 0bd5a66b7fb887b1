"""The DWP ApiResponse envelope (CONTRACT §2.6): Jackson's field order, no nulls, a LocalDateTime, echoes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.datastructures import Headers
from starlette.responses import Response

from aura.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    HttpError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    TenantMismatch,
    TenantMissing,
    TokenExpired,
    TokenInvalid,
    Unauthorized,
    ValidationFailed,
)
from aura.http.envelope import DEFAULT_SUCCESS_MESSAGE, envelope, error_response, success_response

JAVA_ORDER = ["status", "message", "data", "errorCode", "timestamp", "success", "traceId", "gatewayRequestId"]
LOCAL_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}")


def body_of(response: Response) -> dict[str, Any]:
    parsed = json.loads(bytes(response.body).decode("utf-8"))
    assert isinstance(parsed, dict)
    return parsed


def test_fields_are_in_the_java_declaration_order() -> None:
    fields = envelope(success=False, message="m", data={"x": 1}, error_code="E1", trace_id="t", gateway_request_id="g")
    assert list(fields) == JAVA_ORDER


def test_the_order_survives_encoding() -> None:
    headers = Headers(headers={"X-Trace-Id": "t", "X-Gateway-Request-Id": "g"})
    raw = bytes(error_response(headers, NotFound()).body)
    names = [name for name in JAVA_ORDER if name != "data"]
    positions = [raw.index(f'"{name}":'.encode()) for name in names]
    assert positions == sorted(positions)
    assert list(body_of(success_response([1]))) == ["status", "message", "data", "timestamp", "success"]


def test_nulls_are_omitted() -> None:
    fields = envelope(success=True, message="ok")
    assert list(fields) == ["status", "message", "timestamp", "success"]
    assert None not in fields.values()


@pytest.mark.parametrize("data", [0, False, "", [], {}])
def test_falsy_data_that_is_not_null_is_kept(data: Any) -> None:
    assert envelope(success=True, message="ok", data=data)["data"] == data


def test_success_and_status_go_together() -> None:
    assert envelope(success=True, message="ok")["status"] == "SUCCESS"
    assert envelope(success=True, message="ok")["success"] is True
    assert envelope(success=False, message="no")["status"] == "ERROR"
    assert envelope(success=False, message="no")["success"] is False


def test_timestamp_is_an_iso_local_date_time_without_offset() -> None:
    before = datetime.now()
    stamp = envelope(success=True, message="ok")["timestamp"]
    after = datetime.now()
    assert isinstance(stamp, str) and LOCAL_DATE_TIME.fullmatch(stamp), stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is None
    assert not stamp.endswith("Z") and "+" not in stamp
    assert before - timedelta(seconds=1) <= parsed <= after + timedelta(seconds=1)


def test_success_response_is_compact_utf8_json_with_the_default_message() -> None:
    response = success_response({"sessionId": "s", "note": "한국어"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    raw = bytes(response.body)
    assert "한국어".encode() in raw and b"\\u" not in raw  # not ASCII-escaped, like Jackson
    assert b'","' in raw and b'": ' not in raw  # compact
    body = body_of(response)
    assert body["message"] == DEFAULT_SUCCESS_MESSAGE and body["data"] == {"sessionId": "s", "note": "한국어"}
    assert body["success"] is True


def test_success_response_without_data_omits_it_and_takes_a_status() -> None:
    response = success_response(message="created", status_code=201)
    assert response.status_code == 201
    body = body_of(response)
    assert "data" not in body and body["message"] == "created"


ERRORS = [
    BadRequest(), ValidationFailed(error_code="E4001"), PayloadTooLarge(), TenantMissing(), Unauthorized(),
    TokenExpired(), TokenInvalid(), Forbidden(), TenantMismatch(), NotFound("no such session"), MethodNotAllowed(),
    StoreUnavailable("append", TimeoutError()), InternalError(), HttpError(418, "I'm a teapot"), HttpError(409),
]


@pytest.mark.parametrize("error", ERRORS, ids=[f"{type(e).__name__}-{e.status}" for e in ERRORS])
def test_error_response_uses_the_errors_status_code_and_message(error: ApiError) -> None:
    response = error_response(Headers(), error)
    assert response.status_code == error.status
    body = body_of(response)
    assert list(body) == ["status", "message", "errorCode", "timestamp", "success"]
    assert body["status"] == "ERROR" and body["success"] is False
    assert body["message"] == error.message and body["errorCode"] == error.error_code


def test_error_response_of_an_http_error_has_its_own_status() -> None:
    response = error_response(Headers(), HttpError(418, "I'm a teapot"))
    assert response.status_code == 418
    assert body_of(response)["errorCode"] == "E1001" and body_of(response)["message"] == "I'm a teapot"


def test_error_response_echoes_the_gateways_trace_headers_when_sent() -> None:
    headers = Headers(headers={"X-Trace-Id": "trace-1", "X-Gateway-Request-Id": "gw-2"})
    body = body_of(error_response(headers, NotFound()))
    assert body["traceId"] == "trace-1" and body["gatewayRequestId"] == "gw-2"
    assert list(body) == ["status", "message", "errorCode", "timestamp", "success", "traceId", "gatewayRequestId"]


@pytest.mark.parametrize(
    ("sent", "absent"),
    [({}, {"traceId", "gatewayRequestId"}), ({"X-Trace-Id": "t"}, {"gatewayRequestId"}),
     ({"X-Gateway-Request-Id": "g"}, {"traceId"}), ({"X-Trace-Id": "", "X-Gateway-Request-Id": ""},
                                                    {"traceId", "gatewayRequestId"})],
)
def test_error_response_echoes_only_what_was_sent(sent: dict[str, str], absent: set[str]) -> None:
    body = body_of(error_response(Headers(headers=sent), Forbidden()))
    assert not absent & set(body)
    assert {"traceId", "gatewayRequestId"} - absent <= set(body)
