"""Reading and validating request bodies, with hard size limits (CONTRACT §3.1)."""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.requests import Request

from aura.errors import PayloadTooLarge, ValidationFailed

MAX_BODY_BYTES: Final = 512 * 1024
MAX_CONTEXT_BYTES: Final = 256 * 1024  # the gateway's documented body limit
MAX_PROMPT_CHARS: Final = 32_000


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ValidationFailed("Request body is empty; expected a JSON object", error_code="E4001")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("Request body is not valid JSON", error_code="E4002") from exc
    except RecursionError as exc:
        raise ValidationFailed("Request body is nested too deeply", error_code="E4002") from exc
    if not isinstance(value, dict):
        raise ValidationFailed("Request body must be a JSON object", error_code="E4002")
    return value


def validate_prompt(value: Any) -> str:
    if value is None:
        raise ValidationFailed("prompt is required", error_code="E4001")
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("prompt must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise PayloadTooLarge(f"prompt exceeds {MAX_PROMPT_CHARS} characters")
    return value


def validate_context(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed("context must be a JSON object")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_CONTEXT_BYTES:
        raise PayloadTooLarge(f"context exceeds {MAX_CONTEXT_BYTES} bytes (got {size})")
    return value
