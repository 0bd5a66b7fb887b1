"""Models of the real DWP frontend's three SSE clients, to test what a user of each one sees.

Each model is written from reading that client's dispatcher in github ``choijoonbin/dwp-frontend``
(none of its code is here) and keeps exactly the behaviour that decides what reaches the
screen: how it splits the bytes into lines, which lines it skips, how it picks the type and the
fields, what each branch stores, and where a ``break`` drops the rest of a network read.

- :class:`WorkspacePage`: the current AI-workspace page, ``apps/dwp/src/pages/aiworkspace/hooks/
  use-ai-workspace.ts`` at ``2520fb5``;
- :class:`MiniOverlay`: the floating overlay, ``apps/dwp/src/components/aura/aura-mini-overlay.tsx``;
- :class:`EarlierWorkspacePage`: ``apps/dwp/src/pages/ai-workspace.tsx`` at ``58fc341``, before
  its 2026-01-22 refactor.

Feed each the network reads in order (:meth:`Client.feed`), then :meth:`Client.close` when the
server closes the response: that is when the pages save the answer as a chat message.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def truthy(value: Any) -> bool:
    """JavaScript's truthiness: an empty object or array is true, unlike Python's."""
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


def js_text(value: Any) -> str:
    """A value in a JavaScript template string: ``${undefined}`` is "undefined"."""
    return "undefined" if value is None else str(value)


def either(*values: Any) -> Any:
    """JavaScript's ``a || b || …``."""
    for value in values:
        if truthy(value):
            return value
    return values[-1]


@dataclass
class Card:
    """A tool card (``ActionExecutionView``); ``status`` must be a string, it is upper-cased."""

    tool: Any
    params: Any
    status: Any
    result: Any = None
    error: Any = None


@dataclass
class PlanRow:
    local_id: str  # the store makes its own ids (``plan-${Date.now()}-…``); the server's id is dropped
    title: str
    description: str
    order: Any
    status: str


def local_plan() -> list[PlanRow]:
    """The four plan steps both workspace pages add of their own when Send is pressed."""
    return [PlanRow(f"plan-local-{n}", title, "", n, "executing" if n == 0 else "pending")
            for n, title in enumerate(("요청 분석", "계획 수립", "실행", "결과 검증"))]


REJECTED_NOTE = "작업이 거부되었습니다."  # what both workspace pages add themselves when Reject succeeds


def end_card(card: Card, body: dict[str, Any]) -> None:
    """Both workspace pages finish a card only from the frame that made it, when it says so."""
    if body.get("status") == "completed":
        card.status, card.result = "completed", body.get("result")
    elif body.get("status") == "failed":
        card.status, card.error = "failed", body.get("error")


def dialog_of(body: dict[str, Any]) -> dict[str, Any]:
    """The approval dialog the overlay and the earlier page make of a `hitl` frame."""
    return {"id": either(body.get("requestId"), "hitl-local"),
            "message": either(body.get("message"), "이 작업을 실행하시겠습니까?"),
            "action": either(body.get("actionType"), body.get("action"), "unknown"),
            "params": either(body.get("params"), {})}


def result_of(kind: Any, body: dict[str, Any]) -> Any:
    """What the workspace pages keep for the Result tab: a `content` frame's ``metadata.result``."""
    metadata = body.get("metadata") if kind in ("content", "message") else None
    return metadata["result"] if isinstance(metadata, dict) and truthy(metadata.get("result")) else None


def plan_updates(plan: list[PlanRow], kind: Any, body: dict[str, Any]) -> int:
    """How many of a page's plan rows an update matches: by the page's own ids only."""
    if kind not in ("plan_step_update", "timeline_step_update"):
        return 0
    return sum(row.local_id == body.get("id") for row in plan)


@dataclass
class Message:
    role: str
    content: str
    metadata: Any = None


@dataclass
class Client:
    """What every client shares: the line buffer over a UTF-8 stream decoder, and what the user sees."""

    text: str = ""  # the streaming answer (accumulated `content`)
    messages: list[Message] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    pending_hitl: dict[str, Any] | None = None
    thinking: bool = True
    done_seen: bool = False
    _buffer: str = ""
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def feed(self, chunk: bytes) -> None:
        self._buffer += self._decoder.decode(chunk)
        *lines, self._buffer = self._buffer.split("\n")
        self.lines(lines)

    def lines(self, lines: list[str]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The server closed the response: the answer so far becomes a message."""
        if self.text:
            self.messages.append(Message("assistant", self.text, self.saved_metadata()))

    def saved_metadata(self) -> Any:
        """The overlay saves none."""
        return None

    def trimmed_frames(self, lines: list[str]) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
        """How the overlay and the earlier page read: each line trimmed, ``data: `` with its space, the
        type from ``type`` only. Ends at ``[DONE]``; a reader that stops early drops the rest of the read."""
        for line in lines:
            line = line.strip()
            if line.startswith("id: "):
                self.seen_id(line[4:].strip())
                continue
            if line.startswith("event: ") or not line.startswith("data: "):
                continue
            data_text = line[len("data: "):]
            if data_text == "[DONE]":
                self.done_seen = True
                return
            try:
                data = json.loads(data_text)
            except ValueError:
                continue
            yield data.get("type"), either(data.get("data"), data), data

    def seen_id(self, event_id: str) -> None:
        """An ``id:`` line (only the earlier page keeps it)."""

    def read_answer(self, kind: Any, body: dict[str, Any], data: dict[str, Any]) -> None:
        """A `content`/`message` frame, or one without a type that has text: every client appends it."""
        if kind in ("content", "message"):
            source = body
        elif not truthy(kind) and (truthy(data.get("content")) or truthy(data.get("message"))):
            source = data
        else:
            return
        self.thinking = False
        self.text += either(source.get("content"), source.get("message"), "")

    def clicked_approve(self) -> None:
        """After the approve API answered 2xx: the dialog closes and the page thinks again."""
        self.pending_hitl, self.thinking = None, True

    def clicked_reject(self) -> None:
        """After the reject API answered 2xx: the dialog closes, with a message of the page's own."""
        self.pending_hitl, self.thinking = None, False
        self.messages.append(Message("assistant", REJECTED_NOTE))

    def card_labels(self) -> list[str]:
        """What each card shows as its status: ``exec.status.toUpperCase()`` (a crash for a non-string)."""
        for card in self.cards:
            if not isinstance(card.status, str):
                raise TypeError(f"the page crashes: a card's status is {card.status!r}")
        return [card.status.upper() for card in self.cards]


@dataclass
class WorkspacePage(Client):
    """The current AI-workspace page (``use-ai-workspace.ts`` at ``2520fb5``)."""

    status: str = "STREAMING"  # the stream store's status (read by a banner this page does not mount)
    error_message: str | None = None
    thoughts: list[dict[str, Any]] = field(default_factory=list)
    last_result: Any = None  # setLastResultMetadata(...)
    # The message is built from lastResultMetadata as it was when Send was pressed: null.
    result_when_sent: Any = None
    plan: list[PlanRow] = field(default_factory=local_plan)  # and no `plan_step` branch
    plan_updates_landed: int = 0
    event_types: list[str] = field(default_factory=list)

    def saved_metadata(self) -> Any:
        return {"result": self.result_when_sent} if truthy(self.result_when_sent) else None

    def lines(self, lines: list[str]) -> None:
        for line in lines:
            if not line.startswith("data:"):
                continue
            data_text = line.replace("data:", "", 1).strip()
            if not data_text:
                continue
            if data_text == "[DONE]":
                self.status, self.done_seen = "COMPLETED", True
                break
            try:
                data = json.loads(data_text)
            except ValueError:
                continue  # console.error('Parse error')
            kind = either(data.get("event"), data.get("type"))
            body = either(data.get("data"), data)
            if truthy(kind):
                self.event_types.append(kind)
            if kind == "error":
                self.status, self.error_message = "ERROR", either(body.get("message"), "Stream error")
                continue
            if kind == "stream_status":
                self.status = body.get("status")
                continue
            if kind == "hitl_request":
                self.pending_hitl = {"id": f"hitl-{js_text(body.get('id'))}", "stepId": body.get("stepId"),
                                     "message": body.get("message"), "action": body.get("action"),
                                     "params": body.get("params"), "confidence": body.get("confidence")}
                self.thinking = False
                continue
            if kind == "thought_chain":
                self.thoughts.append({"type": body.get("type"), "content": body.get("content"),
                                      "sources": body.get("sources")})
                continue
            if kind == "action_execution":
                card = Card(body.get("tool"), body.get("params"), body.get("status"))
                self.cards.append(card)
                end_card(card, body)
            self.read_answer(kind, body, data)
            if (result := result_of(kind, body)) is not None:
                self.last_result = result
            self.plan_updates_landed += plan_updates(self.plan, kind, body)

    def request_id(self) -> str:
        """What the approve/reject buttons put in the URL: the pending id without its ``hitl-``."""
        assert self.pending_hitl is not None, "no approval dialog"
        pending = str(self.pending_hitl["id"])
        return pending.replace("hitl-", "", 1) if pending.startswith("hitl-") else pending


@dataclass
class MiniOverlay(Client):
    """The floating overlay (``aura-mini-overlay.tsx``)."""

    timeline: list[dict[str, Any]] = field(default_factory=list)
    thinking_shown: int = 0

    def lines(self, lines: list[str]) -> None:
        for kind, body, data in self.trimmed_frames(lines):
            if kind in ("thought", "thinking"):
                self.thinking, self.thinking_shown = True, self.thinking_shown + 1
            elif kind == "plan_step":
                self.timeline.append({"title": either(body.get("title"), "계획 단계"),
                                      "description": either(body.get("description"), ""), "status": "processing"})
            elif kind in ("tool_execution", "action"):
                self.cards.append(Card(either(body.get("tool"), "unknown"), either(body.get("params"), {}),
                                       "executing"))
            elif kind in ("hitl", "approval_required"):
                self.pending_hitl, self.thinking = dialog_of(body), False
                break  # the rest of this read is dropped
            else:
                self.read_answer(kind, body, data)


@dataclass
class EarlierWorkspacePage(Client):
    """The AI-workspace page before its refactor (``pages/ai-workspace.tsx`` at ``58fc341``)."""

    thoughts: list[dict[str, Any]] = field(default_factory=list)
    plan: list[PlanRow] = field(default_factory=local_plan)
    plan_before_send: int = 0  # the `planSteps` the Send handler closed over (a first session: none)
    plan_updates_landed: int = 0
    last_result: Any = None
    result_when_sent: Any = None  # as on the current page, the saved message uses Send's copy: null
    last_event_id: str | None = None

    def saved_metadata(self) -> Any:
        return {"result": self.result_when_sent} if truthy(self.result_when_sent) else None

    def seen_id(self, event_id: str) -> None:
        self.last_event_id = event_id

    def lines(self, lines: list[str]) -> None:
        for kind, body, data in self.trimmed_frames(lines):
            if kind in ("thought", "thinking"):
                self.thinking = True
                self.thoughts.append({"type": either(body.get("thoughtType"), "analysis"),
                                      "content": either(body.get("content"), body.get("message"), "사고 중..."),
                                      "sources": body.get("sources")})
            if kind == "plan_step":
                self.plan.append(PlanRow(f"plan-local-{len(self.plan)}", either(body.get("title"), "계획 단계"),
                                         either(body.get("description"), ""),
                                         either(body.get("order"), self.plan_before_send), "pending"))
                self.plan.sort(key=lambda row: row.order)  # the store sorts by order; JS's sort is stable
            if kind in ("hitl", "approval_required"):
                self.pending_hitl, self.thinking = dialog_of(body), False
                break  # "Stop streaming for approval": the rest of this read is dropped
            if kind in ("tool_execution", "action"):
                card = Card(either(body.get("tool"), "unknown"), either(body.get("params"), {}), "executing")
                self.cards.append(card)
                end_card(card, body)
            self.read_answer(kind, body, data)
            if (result := result_of(kind, body)) is not None:
                self.last_result = result
            self.plan_updates_landed += plan_updates(self.plan, kind, body)
