"""A streaming client for any OpenAI-compatible Chat Completions endpoint (vLLM, Ollama, LiteLLM, ...).

Retries cover only what is safe to retry: connection failures, 429 and 5xx answers
that arrive before any streamed byte was consumed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from aura.errors import PlannerError
from aura.metrics import LlmOutcome, Metrics, unserved
from aura.telemetry import tracing

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class LlmSettings:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_seconds: float = 60.0
    max_retries: int = 2
    retry_backoff_seconds: float = 0.5


@dataclass(slots=True)
class ToolCall:
    """A tool call assembled from streamed fragments; ``arguments`` stays raw JSON text."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class ChatTurn:
    """What one streamed completion said."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ChatDelta:
    content: str | None = None
    reasoning: str | None = None


class ChatClient:
    def __init__(self, settings: LlmSettings, http: httpx.AsyncClient, *, metrics: Metrics | None = None) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._settings = settings
        self._http = http
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        endpoint = httpx.URL(self._url)
        self._span_attributes: dict[str, tracing.AttributeValue] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": settings.model, "server.address": endpoint.host,
            "server.port": endpoint.port or (443 if endpoint.scheme == "https" else 80),
        }

    async def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        turn: ChatTurn,
    ) -> AsyncIterator[ChatDelta]:
        """Stream one completion; text deltas are yielded, everything is also gathered in ``turn``."""
        body: dict[str, Any] = {"model": self._settings.model, "messages": list(messages), "stream": True}
        if tools:
            body["tools"] = list(tools)
            body["tool_choice"] = "auto"
        headers = {"Accept": "text/event-stream"}
        if self._settings.api_key:
            headers["Authorization"] = f"Bearer {self._settings.api_key}"
        outcome = LlmOutcome.FAILED
        started = time.perf_counter()
        try:
            # Never made current: this generator's cleanup may run in another task. No text goes on it.
            with tracing.client_span(f"chat {self._settings.model}", self._span_attributes) as call:
                headers.update(call.headers())  # traceparent: the model endpoint's spans are children of this one
                async for delta in self._attempts(body, headers, turn, call):
                    yield delta
            outcome = LlmOutcome.COMPLETED
        except (asyncio.CancelledError, GeneratorExit):
            outcome = LlmOutcome.CANCELLED
            raise
        finally:
            self._metrics.llm_called(outcome, time.perf_counter() - started)

    async def _attempts(
        self, body: dict[str, Any], headers: dict[str, str], turn: ChatTurn, call: tracing.SpanScope
    ) -> AsyncIterator[ChatDelta]:
        """One completion, tried again on what is safe to retry."""
        timeout = httpx.Timeout(self._settings.timeout_seconds)
        attempt = 0
        while True:
            attempt += 1
            call.set({"aura.llm.attempts": attempt})
            try:
                async with self._http.stream("POST", self._url, json=body, headers=headers, timeout=timeout) as response:
                    call.set({"http.response.status_code": response.status_code})
                    if response.status_code in _RETRYABLE_STATUS and attempt <= self._settings.max_retries:
                        log.warning("LLM answered %d; retry %d", response.status_code, attempt)
                    elif response.status_code >= 400:
                        text = (await response.aread()).decode("utf-8", "replace")[:500]
                        raise PlannerError(f"the model endpoint answered HTTP {response.status_code}: {text}")
                    else:
                        async for delta in _parse_stream(response, turn):
                            yield delta
                        call.set({"aura.llm.finish_reason": turn.finish_reason,
                                  "aura.llm.tool_calls": len(turn.tool_calls)})
                        return
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt > self._settings.max_retries:
                    raise PlannerError(f"the model endpoint is unreachable: {type(exc).__name__}") from exc
                log.warning("LLM connection failed (%s); retry %d", type(exc).__name__, attempt)
            except httpx.TimeoutException as exc:
                raise PlannerError(f"the model did not answer within {self._settings.timeout_seconds:g} s") from exc
            except httpx.HTTPError as exc:
                raise PlannerError(f"the model request failed: {type(exc).__name__}") from exc
            await asyncio.sleep(self._settings.retry_backoff_seconds * attempt)


async def _parse_stream(response: httpx.Response, turn: ChatTurn) -> AsyncIterator[ChatDelta]:
    saw_done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            saw_done = True
            break
        try:
            chunk = json.loads(data)
            choices = chunk["choices"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PlannerError(f"the model sent a malformed stream chunk: {data[:200]!r}") from exc
        if not isinstance(choices, list):
            raise PlannerError(f"the model sent a malformed stream chunk: {data[:200]!r}")
        if not choices:
            continue  # e.g. a final usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise PlannerError("the model sent a malformed choice")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise PlannerError("the model sent a malformed delta")
        if choice.get("finish_reason"):
            turn.finish_reason = str(choice["finish_reason"])
        _merge_tool_calls(turn, delta.get("tool_calls"))
        content = delta.get("content")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        out = ChatDelta(
            content=content if isinstance(content, str) and content else None,
            reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
        )
        if out.content:
            turn.content += out.content
        if out.reasoning:
            turn.reasoning += out.reasoning
        if out.content or out.reasoning:
            yield out
    if not saw_done and turn.finish_reason is None:
        raise PlannerError("the model stream ended before it finished")


def _merge_tool_calls(turn: ChatTurn, fragments: Any) -> None:
    if fragments is None:
        return
    if not isinstance(fragments, list):
        raise PlannerError("the model sent malformed tool_calls")
    for fragment in fragments:
        if not isinstance(fragment, dict):
            raise PlannerError("the model sent a malformed tool call")
        index = fragment.get("index", len(turn.tool_calls))
        if not isinstance(index, int) or index < 0 or index > 64:
            raise PlannerError("the model sent a tool call with a bad index")
        while len(turn.tool_calls) <= index:
            turn.tool_calls.append(ToolCall())
        call = turn.tool_calls[index]
        if isinstance(fragment.get("id"), str):
            call.id = fragment["id"]
        function = fragment.get("function") or {}
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            if isinstance(function.get("arguments"), str):
                call.arguments += function["arguments"]
