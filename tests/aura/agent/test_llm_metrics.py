"""What the Chat Completions client records, against respx-mocked endpoints: one call per completion asked
(its retries inside it), by outcome, with its duration."""

from __future__ import annotations

import httpx
import pytest
import respx

from aura.agent.llm import ChatClient, ChatTurn, LlmSettings
from aura.errors import PlannerError
from aura.metrics import Metrics
from tests.support.llm import text_stream
from tests.support.metrics import labels, of

pytestmark = pytest.mark.anyio
URL = "https://llm.test/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(http: httpx.AsyncClient, metrics: Metrics) -> ChatClient:
    settings = LlmSettings(base_url="https://llm.test/v1", model="m", retry_backoff_seconds=0.01, max_retries=2)
    return ChatClient(settings, http, metrics=metrics)


@respx.mock
async def test_a_completion_after_a_retry_is_one_completed_call_with_its_duration() -> None:
    respx.post(URL).mock(side_effect=[httpx.Response(503), text_stream("Hel", "lo")])
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        texts = [d.content async for d in chat(http, metrics).stream(MESSAGES, turn=ChatTurn())]
    assert texts == ["Hel", "lo"]
    scrape = of(metrics)
    assert scrape.deltas(of(Metrics()), "aura_llm_calls_total") == {labels(outcome="completed"): 1}
    assert scrape.value("aura_llm_call_duration_seconds_count") == 1
    assert scrape.value("aura_llm_call_duration_seconds_sum") >= 0.01  # the retry's backoff is inside it


@respx.mock
async def test_a_model_that_keeps_failing_is_one_failed_call() -> None:
    respx.post(URL).mock(side_effect=[httpx.Response(503)] * 3)
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        with pytest.raises(PlannerError):
            async for _ in chat(http, metrics).stream(MESSAGES, turn=ChatTurn()):
                pass
    assert of(metrics).deltas(of(Metrics()), "aura_llm_calls_total") == {labels(outcome="failed"): 1}


@respx.mock
async def test_a_completion_its_reader_stops_is_a_cancelled_call() -> None:
    respx.post(URL).mock(return_value=text_stream("one", "two", "three"))
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        stream = chat(http, metrics).stream(MESSAGES, turn=ChatTurn())
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]  # the run stopped while the model answered
    assert first.content == "one"
    assert of(metrics).deltas(of(Metrics()), "aura_llm_calls_total") == {labels(outcome="cancelled"): 1}
