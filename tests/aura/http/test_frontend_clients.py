"""What a user of each of the real frontend's three clients sees, through the gateway's path mapping.

One session per case, through a real nginx (``/api/aura/`` → ``/aura/``) to a real uvicorn and
redis-server. The network reads go, in order, to models of the current AI-workspace page, the
floating overlay and the earlier AI-workspace page (tests/support/frontend_clients.py), and the
approval is made the way the current page makes it: ``POST /api/aura/hitl/approve|reject/{id}``
with the id from its dialog. Each case asserts the whole event sequence (docs/EVENTS.md), one
terminal ``action_execution`` per tool call, the explanatory ``content`` before ``[DONE]`` on
every ending without an answer (CONTRACT §3.8), and what each page ends up showing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from tests.support.agent import Logged, assert_workspace_events, terminal_cards
from tests.support.auth import approver_headers, auth_headers
from tests.support.frontend_clients import Client, EarlierWorkspacePage, MiniOverlay, WorkspacePage
from tests.support.live_server import LiveServer
from tests.support.nginx import NginxProxy, require_nginx
from tests.support.sse import Frame, parse_frame

pytestmark = pytest.mark.anyio

GREETING = "Hello, what can you do?"
TASKS_PROMPT = "Summarize today's open tasks"
EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"
KOREAN_EMAIL_PROMPT = "kim@example.com 에게 회의 일정 메일 보내줘"
KOREAN_REASON = "사용자가 작업을 거부했습니다."  # what the current page sends on Reject

# What Aura writes before the plan and after each step, for a one-tool plan (docs/EVENTS.md).
OPENING = ["thought", "thought_chain", "thought", "thought_chain"]


@pytest.fixture
def gateway() -> Iterator[Callable[[LiveServer], NginxProxy]]:
    started: list[NginxProxy] = []

    def start(server: LiveServer) -> NginxProxy:
        require_nginx()
        proxy = NginxProxy(server.port)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@dataclass
class Watched:
    """One session's stream as the three clients read it, read by read."""

    response: httpx.Response
    page: WorkspacePage = field(default_factory=WorkspacePage)
    overlay: MiniOverlay = field(default_factory=MiniOverlay)
    earlier: EarlierWorkspacePage = field(default_factory=EarlierWorkspacePage)
    raw: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._reads = self.response.aiter_raw()

    @property
    def clients(self) -> tuple[Client, ...]:
        return self.page, self.overlay, self.earlier

    async def until(self, ready: Callable[[], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not ready():
                self._take(await self._reads.__anext__())

    async def to_the_end(self, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            async for chunk in self._reads:
                self._take(chunk)
        for client in self.clients:
            client.close()

    def _take(self, chunk: bytes) -> None:
        self.raw += chunk
        for client in self.clients:
            client.feed(chunk)

    def frames(self) -> list[Frame]:
        """Every frame but heartbeats, through the strict parser."""
        blocks = bytes(self.raw).split(b"\n\n")
        assert blocks[-1] == b"", "the stream ended inside a frame"
        frames = [parse_frame(block) for block in blocks[:-1]]
        return [frame for frame in frames if frame.data is not None]

    def logged(self) -> list[Logged]:
        return [(str(f.type), f.body) for f in self.frames() if not f.is_done]

    def types(self) -> list[str]:
        return ["[DONE]" if f.is_done else str(f.type) for f in self.frames()]


@contextlib.asynccontextmanager
async def watch(proxy: NginxProxy, prompt: str, headers: dict[str, str]) -> AsyncIterator[tuple[Watched, httpx.AsyncClient]]:
    """The page's request: POST /api/aura/test/stream with {prompt, context} (CONTRACT §3.1)."""
    context = {"activeApp": "aiworkspace", "path": "/ai-workspace", "language": "ko-KR"}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        async with client.stream("POST", "/api/aura/test/stream", json={"prompt": prompt, "context": context},
                                 headers={"Accept": "text/event-stream", **headers}) as response:
            assert response.status_code == 200
            yield Watched(response), client


def dialogs_open(watched: Watched) -> Callable[[], bool]:
    return lambda: all(client.pending_hitl is not None for client in watched.clients)


def assert_common(watched: Watched) -> list[Logged]:
    """What holds for every session: the page's events beside the documented ones, ids in order,
    and ``[DONE]`` last (CONTRACT §3.3)."""
    frames = watched.frames()
    assert frames[-1].is_done and frames[-1].raw == b"data: [DONE]"
    session_id = frames[0].session_id
    assert [f.id for f in frames[:-1]] == [f"{session_id}.{n}" for n in range(1, len(frames))]
    events = watched.logged()
    assert_workspace_events(events)
    for client in watched.clients:
        assert client.done_seen
        client.card_labels()  # no card the page would crash on
    # The current page: every thought appears, in order, with its kind.
    thoughts = [(data["thoughtType"], data["content"]) for kind, data in events if kind == "thought"]
    assert [(t["type"], t["content"]) for t in watched.page.thoughts][: len(thoughts)] == thoughts
    # The earlier page reads the documented `thought` the same way.
    assert [(t["type"], t["content"]) for t in watched.earlier.thoughts] == thoughts
    return events


def explanation(events: list[Logged]) -> dict[str, Any]:
    """CONTRACT §3.8: an explanatory `content` right before the one `error`, which is last before [DONE]."""
    assert [kind for kind, _ in events[-2:]] == ["content", "error"], [kind for kind, _ in events]
    return events[-2][1]


def assert_every_page_shows(watched: Watched, text: str, *, before: tuple[str, ...] = ()) -> None:
    """Every client's chat messages are ``before`` (the page's own) and then ``text``, saved when the
    server closed the stream; none of them carries a result (docs/EVENTS.md: the Result tab)."""
    for client in watched.clients:
        expected = [*before, text] if isinstance(client, (WorkspacePage, EarlierWorkspacePage)) else [text]
        assert [m.content for m in client.messages] == expected, (type(client).__name__, client.messages)
        assert all(m.metadata is None for m in client.messages)


# -- the cases of issue 11 ---------------------------------------------------------------------------
async def test_a_plain_answer_shows_its_thoughts_and_its_answer_on_every_page(
    aura: LiveServer, gateway: Callable[[LiveServer], NginxProxy]
) -> None:
    async with watch(gateway(aura), GREETING, auth_headers()) as (watched, _):
        await watched.to_the_end()

    assert watched.types() == [
        *OPENING, "plan_step", "thought_chain", "state", "plan_step_update", "plan_step_update", "content", "state",
        "[DONE]",
    ]
    events = assert_common(watched)
    answer = events[-2][1]
    assert "metadata" not in answer  # no tool ran: no result
    assert watched.page.thoughts[-1] == {"type": "planning", "content": "Plan:\n1. Answer", "sources": None}
    assert_every_page_shows(watched, answer["content"])
    assert watched.page.cards == watched.overlay.cards == watched.earlier.cards == []
    assert watched.page.status == "COMPLETED" and watched.page.error_message is None
    assert watched.page.last_result is None


async def test_a_tool_answer_shows_one_completed_card_and_hands_the_result_to_the_current_page(
    aura: LiveServer, gateway: Callable[[LiveServer], NginxProxy], redis: Redis
) -> None:
    await redis.delete("aura:tasks:61")
    async with watch(gateway(aura), TASKS_PROMPT, auth_headers("61", "61")) as (watched, _):
        await watched.to_the_end()

    assert watched.types() == [
        *OPENING, "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "plan_step_update", "plan_step_update", "content", "state", "[DONE]",
    ]
    events = assert_common(watched)
    result = {"type": "text", "title": "Read open tasks", "content": "no open tasks for today"}
    assert events[-2][1] == {"content": "Read open tasks: no open tasks for today", "format": "markdown",
                             "metadata": {"result": result}}
    # The current page: one card, completed with the tool's result; it stores the result (which its
    # saved message then leaves out: docs/EVENTS.md, "The Result tab stays empty").
    assert watched.page.card_labels() == ["COMPLETED"]
    assert watched.page.cards[0].result == "no open tasks for today"
    assert watched.page.cards[0].params == {"scope": "today"}
    assert watched.page.last_result == result
    assert watched.page.thoughts[-1]["content"] == "Plan:\n1. Read open tasks\n2. Summarize"
    # The earlier page: a card per `tool_execution` frame, the second completed; the overlay never
    # completes a card (docs/EVENTS.md, "What each client shows").
    assert watched.earlier.card_labels() == ["EXECUTING", "COMPLETED"]
    assert watched.overlay.card_labels() == ["EXECUTING", "EXECUTING"]
    # The earlier page's board: its own four steps, the server's sorted in by `order`, all pending.
    assert [(row.title, row.status) for row in watched.earlier.plan] == [
        ("요청 분석", "executing"), ("Read open tasks", "pending"), ("계획 수립", "pending"),
        ("Summarize", "pending"), ("실행", "pending"), ("결과 검증", "pending")]
    assert [step["status"] for step in watched.overlay.timeline] == ["processing", "processing"]
    assert_every_page_shows(watched, "Read open tasks: no open tasks for today")


async def test_an_approved_email_resumes_the_same_stream_to_one_completed_card(
    aura: LiveServer, gateway: Callable[[LiveServer], NginxProxy]
) -> None:
    proxy = gateway(aura)
    async with watch(proxy, EMAIL_PROMPT, auth_headers()) as (watched, http):
        await watched.until(dialogs_open(watched))
        dialog = watched.page.pending_hitl
        assert dialog is not None and dialog["action"] == "send_email"
        assert dialog["params"]["to"] == "kim@example.com" and dialog["message"].startswith("Approve send_email?")
        assert watched.page.card_labels() == []  # nothing has run
        approved = await http.post(f"/api/aura/hitl/approve/{watched.page.request_id()}", json={"userId": "1"},
                                   headers=approver_headers())
        assert approved.status_code == 200, approved.text
        asked = [client.pending_hitl for client in watched.clients]
        for client in watched.clients:
            client.clicked_approve()
        await watched.to_the_end()

    assert watched.types() == [
        *OPENING, "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "plan_step_update", "plan_step_update", "state", "hitl", "hitl_request",
        "state", "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update",
        "content", "state", "[DONE]",
    ]
    events = assert_common(watched)
    hitl = next(data for kind, data in events if kind == "hitl")
    # Every client asked about the same request (the current page keeps it as hitl-{id}).
    assert [dialog["id"] if dialog else None for dialog in asked] == [
        f"hitl-{hitl['requestId']}", hitl["requestId"], hitl["requestId"]]
    [card] = terminal_cards(events)
    assert card["status"] == "completed" and card["tool"] == "send_email"
    assert watched.page.card_labels() == ["COMPLETED"]
    assert watched.page.last_result == {"type": "text", "title": "Send the email", "content": card["result"]}
    assert watched.page.status == "COMPLETED" and watched.page.error_message is None
    assert_every_page_shows(watched, events[-2][1]["content"])


async def test_a_rejection_with_a_korean_reason_is_explained_in_korean_on_every_page(
    aura: LiveServer, gateway: Callable[[LiveServer], NginxProxy]
) -> None:
    async with watch(gateway(aura), KOREAN_EMAIL_PROMPT, auth_headers()) as (watched, http):
        await watched.until(dialogs_open(watched))
        rejected = await http.post(f"/api/aura/hitl/reject/{watched.page.request_id()}",
                                   json={"userId": "1", "reason": KOREAN_REASON}, headers=approver_headers())
        assert rejected.status_code == 200, rejected.text
        watched.page.clicked_reject()
        watched.earlier.clicked_reject()
        await watched.to_the_end()

    assert watched.types() == [
        *OPENING, "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "plan_step_update", "plan_step_update", "state", "hitl", "hitl_request",
        "plan_step_update", "state", "content", "error", "[DONE]",
    ]
    events = assert_common(watched)
    text = f"승인이 거부되어 send_email 작업을 실행하지 않았습니다. 사유: {KOREAN_REASON}"
    assert explanation(events) == {"content": text, "format": "markdown"}  # nothing ran: no result
    assert terminal_cards(events) == [] and watched.page.cards == []
    assert_every_page_shows(watched, text, before=("작업이 거부되었습니다.",))
    # The current page keeps the error in its stream store, which nothing on the page shows, and
    # [DONE] then marks the stream completed: the explanation is what the user reads.
    assert watched.page.error_message == f"send_email was rejected: {KOREAN_REASON}"
    assert watched.page.status == "COMPLETED"


async def test_an_approval_timeout_is_explained_on_every_page(
    start_server: Callable[..., LiveServer], gateway: Callable[[LiveServer], NginxProxy]
) -> None:
    server = start_server(hitl_timeout_seconds=1.0)
    async with watch(gateway(server), EMAIL_PROMPT, auth_headers()) as (watched, _):
        await watched.until(dialogs_open(watched))
        await watched.to_the_end()

    assert watched.types() == [
        *OPENING, "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "plan_step_update", "plan_step_update", "state", "hitl", "hitl_request",
        "plan_step_update", "state", "content", "error", "[DONE]",
    ]
    events = assert_common(watched)
    text = "I did not run send_email: nobody approved it within 1 s, so I withdrew the request."
    assert explanation(events) == {"content": text, "format": "markdown"}
    assert events[-1][1]["errorType"] == "TimeoutError"
    assert terminal_cards(events) == []
    assert_every_page_shows(watched, text)
    # Nothing closes the dialog: each client still shows the withdrawn request (docs/EVENTS.md).
    assert all(client.pending_hitl is not None for client in watched.clients)


async def test_a_failing_tool_shows_one_failed_card_and_the_reason_on_every_page(
    aura: LiveServer, gateway: Callable[[LiveServer], NginxProxy], redis: Redis
) -> None:
    await redis.delete("aura:tasks:62")
    await redis.set("aura:tasks:62", "not a hash")  # the tool's HGETALL fails with WRONGTYPE
    try:
        async with watch(gateway(aura), "오늘 할 일 요약해줘", auth_headers("62", "62")) as (watched, _):
            await watched.to_the_end()
    finally:
        await redis.delete("aura:tasks:62")

    assert watched.types() == [
        *OPENING, "plan_step", "plan_step", "thought_chain", "state",
        "plan_step_update", "tool_execution", "tool_execution", "action_execution", "plan_step_update", "state",
        "content", "error", "[DONE]",
    ]
    events = assert_common(watched)
    [card] = terminal_cards(events)
    assert card["status"] == "failed" and card["tool"] == "list_open_tasks"
    said = explanation(events)
    assert said["content"] == f"list_open_tasks 실행에 실패하여 작업을 중단했습니다 ({card['error']})."
    assert said["metadata"]["result"] == {"type": "checklist", "title": "도구 실행 결과", "content": [
        {"label": f"Read open tasks: 실패: {card['error']}", "checked": False}]}
    assert watched.page.card_labels() == ["FAILED"] and watched.page.cards[0].error == card["error"]
    assert watched.earlier.card_labels() == ["EXECUTING", "FAILED"]
    assert_every_page_shows(watched, said["content"])
