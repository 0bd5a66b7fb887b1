"""The Chat Completions client against respx-mocked endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import respx

from aura.errors import PlannerError
from aura.agent.llm import ChatClient, ChatTurn, LlmSettings
from tests.support.llm import sse, text_stream, tool_call_stream

pytestmark = pytest.mark.anyio
URL = "https://llm.test/v1/chat/completions"


def client(http: httpx.AsyncClient, **overrides: Any) -> ChatClient:
    settings = LlmSettings(**{"base_url": "https://llm.test/v1", "model": "m", "api_key": "k",
                              "retry_backoff_seconds": 0.01, **overrides})
    return ChatClient(settings, http)


async def collect(chat: ChatClient, tools: Sequence[dict[str, Any]] | None = None) -> tuple[list[str], ChatTurn]:
    turn = ChatTurn()
    texts = [d.content async for d in chat.stream([{"role": "user", "content": "hi"}], tools=tools, turn=turn) if d.content]
    return texts, turn


@respx.mock
async def test_streamed_text_and_request_shape() -> None:
    route = respx.post(URL).mock(return_value=text_stream("Hel", "lo", reasoning="thinking"))
    async with httpx.AsyncClient() as http:
        texts, turn = await collect(client(http), tools=[{"type": "function", "function": {"name": "t"}}])
    assert texts == ["Hel", "lo"] and turn.content == "Hello" and turn.reasoning == "thinking"
    request = route.calls.last.request
    body = httpx.Response(200, content=request.content).json()
    assert body["model"] == "m" and body["stream"] is True and body["tool_choice"] == "auto"
    assert request.headers["authorization"] == "Bearer k"


@respx.mock
async def test_tool_call_fragments_are_assembled() -> None:
    respx.post(URL).mock(return_value=tool_call_stream("send_email", '{"to":"a@b.io","body":"x"}', say="Sending."))
    async with httpx.AsyncClient() as http:
        _, turn = await collect(client(http))
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [("call_1", "send_email", '{"to":"a@b.io","body":"x"}')]
    assert turn.content == "Sending." and turn.finish_reason == "tool_calls"


@respx.mock
async def test_transient_errors_are_retried_a_bounded_number_of_times() -> None:
    route = respx.post(URL).mock(side_effect=[httpx.Response(503), httpx.ConnectError("down"), text_stream("ok")])
    async with httpx.AsyncClient() as http:
        texts, _ = await collect(client(http))
    assert texts == ["ok"] and route.call_count == 3
    route.reset()
    route.mock(side_effect=[httpx.Response(503)] * 3)
    async with httpx.AsyncClient() as http:
        with pytest.raises(PlannerError, match="HTTP 503"):
            await collect(client(http))
    assert route.call_count == 3  # one try and two retries


@respx.mock
async def test_client_errors_are_not_retried() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(401, json={"error": "bad key"}))
    async with httpx.AsyncClient() as http:
        with pytest.raises(PlannerError, match='HTTP 401: {"error"'):
            await collect(client(http))
    assert route.call_count == 1


@respx.mock
async def test_timeout_is_a_planner_error() -> None:
    respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(PlannerError, match="did not answer within 60 s"):
            await collect(client(http))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"data: {not json\n\n", "malformed stream chunk"),
        (b'data: {"choices": "x"}\n\n', "malformed stream chunk"),
        (b'data: {"choices":[{"delta":{"tool_calls":"x"}}]}\n\n', "malformed tool_calls"),
        (b'data: {"choices":[{"delta":{"tool_calls":[{"index":999}]}}]}\n\n', "bad index"),
        (sse({"choices": [{"delta": {"content": "cut"}}]}, done=False), "ended before it finished"),
    ],
)
async def test_garbage_streams_are_planner_errors(content: bytes, message: str) -> None:
    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, content=content))
        async with httpx.AsyncClient() as http:
            with pytest.raises(PlannerError, match=message):
                await collect(client(http))
