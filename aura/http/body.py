"""Reading and validating request bodies, with hard size limits (CONTRACT §3.1)."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.requests import Request

from aura.errors import PayloadTooLarge, ValidationFailed

MAX_BODY_BYTES: Final = 512 * 1024
MAX_CONTEXT_BYTES: Final = 256 * 1024  # the gateway's documented body limit
MAX_PROMPT_CHARS: Final = 32_000
# Bounds on the shape of ``context`` (docs/DECISIONS.md, body limits). The real FE sends about ten
# top-level keys (CONTRACT §3.1) and nests two levels; nested payload is left to the 256 KiB cap.
MAX_CONTEXT_KEYS: Final = 1_000  # keys of the context object itself; more is 400 E4000
MAX_CONTEXT_DEPTH: Final = 32  # the context object is level 1, each object or array inside one more
# X-Agent-ID is stored with the session and resent on every DWP call (CONTRACT §2.3); the frontend's
# are `agent_session_<ms>_<rand>`, about 40 characters.
MAX_AGENT_ID_CHARS: Final = 128
_AGENT_ID: Final = re.compile(r"[A-Za-z0-9._:-]+")


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
    """The body as a JSON object of valid Unicode (RFC 8259 §8): anything else is 400 E4001/E4002."""
    if not body.strip():
        raise ValidationFailed("Request body is empty; expected a JSON object", error_code="E4001")
    if body.startswith(b"\xef\xbb\xbf"):  # json.loads(bytes) would skip it; RFC 8259 §8.1 lets us refuse it
        raise ValidationFailed("Request body must not start with a byte order mark (BOM)", error_code="E4002")
    try:
        # Strict UTF-8, not json.loads(bytes): that guesses UTF-16/32 and lets encoded surrogates through.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("Request body is not valid UTF-8", error_code="E4002") from exc
    try:
        value = json.loads(text)
        # A "\ud800" escape parses to a lone surrogate, which no UTF-8 writer (Redis) can encode.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = f"\\u{ord(exc.object[exc.start]):04x}"
        raise ValidationFailed(
            f"Request body contains a lone UTF-16 surrogate ({surrogate}); text must be valid Unicode",
            error_code="E4002",
        ) from exc
    except ValueError as exc:
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
    if len(value) > MAX_CONTEXT_KEYS:
        raise ValidationFailed(f"context has {len(value)} keys; at most {MAX_CONTEXT_KEYS} are allowed")
    if _depth_exceeds(value, MAX_CONTEXT_DEPTH):
        raise ValidationFailed(f"context is nested more than {MAX_CONTEXT_DEPTH} levels deep")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_CONTEXT_BYTES:
        raise PayloadTooLarge(f"context exceeds {MAX_CONTEXT_BYTES} bytes (got {size})")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests objects/arrays more than ``limit`` levels; iterative, no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def validate_agent_id(value: str | None) -> str | None:
    """``X-Agent-ID``: absent, or at most 128 letters, digits, ``.``, ``_``, ``:`` or ``-`` (400 E4000)."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if len(value) > MAX_AGENT_ID_CHARS:
        raise ValidationFailed(f"X-Agent-ID exceeds {MAX_AGENT_ID_CHARS} characters")
    if not _AGENT_ID.fullmatch(value):
        raise ValidationFailed("X-Agent-ID may only contain letters, digits, '.', '_', ':' and '-'")
    return value
