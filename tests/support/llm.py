"""Chat Completions streams, as an OpenAI-compatible server sends them, for respx."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx

LLM: Final = "https://llm.test/v1/chat/completions"  # the model endpoint of the tests' LLM servers
GATEWAY: Final = "http://gateway.test"  # AURA_DWP_GATEWAY_URL of the tests' DWP tools
# A DWP tool that needs approval, declared as an AURA_TOOLS_FILE entry (POST {gateway}/api/mail/send).
MAIL_TOOL: Final[dict[str, Any]] = {
    "name": "send_dwp_mail",
    "description": "Send a mail through DWP mail-service.",
    "requires_approval": True,
    "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
                   "required": ["to", "subject"], "additionalProperties": False},
    "http": {"method": "POST", "url": "{gateway}/api/mail/send", "body": {"to": "{to}", "subject": "{subject}"}},
}


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def text_stream(*pieces: str, reasoning: str | None = None) -> httpx.Response:
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    if reasoning:
        chunks.append({"choices": [{"index": 0, "delta": {"reasoning_content": reasoning}}]})
    chunks += [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return httpx.Response(200, content=sse(*chunks), headers={"content-type": "text/event-stream"})


def tool_call_stream(name: str, arguments: str, *, say: str = "", call_id: str = "call_1") -> httpx.Response:
    """A tool call whose name and arguments arrive in fragments, as real servers send them."""
    half = len(arguments) // 2
    chunks: list[dict[str, Any]] = []
    if say:
        chunks.append({"choices": [{"index": 0, "delta": {"content": say}}]})
    chunks += [
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments[:half]}}
        ]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    return httpx.Response(200, content=sse(*chunks), headers={"content-type": "text/event-stream"})
