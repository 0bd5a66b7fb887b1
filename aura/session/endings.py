"""What a user reads when a session ends without its answer: one short sentence or two.

It goes out as a `content` event before the `error` event and ``[DONE]``
(CONTRACT §3.8 allows "`error` or explanatory `content`"), because two of the
frontend's three clients have no `error` branch and the third keeps the error only in a
store its page does not show: the appended `content` is what every page keeps on screen.
"""

from __future__ import annotations

import enum
from typing import Final

from aura.session.events import fit
from aura.session.language import Language

DETAIL_CHARS: Final = 300  # a human's reason or a tool's error, clipped: the text stays one short frame


class Ending(enum.Enum):
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    CANCELLED_WHILE_RUNNING = "cancelled_while_running"
    INVALID_CALL = "invalid_call"
    TOOL_FAILED = "tool_failed"
    INTERRUPTED = "interrupted"
    PLANNER_FAILED = "planner_failed"
    INTERNAL = "internal"
    SESSION_LOST = "session_lost"


# {tool}: the tool's name; {detail}: the reason or error; {seconds}: the approval timeout.
TEXTS: Final[dict[Ending, dict[Language, str]]] = {
    Ending.REJECTED: {
        Language.ENGLISH: "I did not run {tool}: the request was rejected. Reason: {detail}",
        Language.KOREAN: "승인이 거부되어 {tool} 작업을 실행하지 않았습니다. 사유: {detail}",
    },
    Ending.TIMED_OUT: {
        Language.ENGLISH: "I did not run {tool}: nobody approved it within {seconds} s, so I withdrew the request.",
        Language.KOREAN: "{seconds}초 안에 승인되지 않아 요청을 철회했습니다. {tool} 작업은 실행하지 않았습니다.",
    },
    Ending.CANCELLED: {
        Language.ENGLISH: "I stopped: the session was cancelled.",
        Language.KOREAN: "세션이 취소되어 작업을 중단했습니다.",
    },
    Ending.CANCELLED_WHILE_RUNNING: {
        Language.ENGLISH: "I stopped: the session was cancelled while {tool} was running. It may already have taken effect.",
        Language.KOREAN: "{tool} 실행 중에 세션이 취소되어 작업을 중단했습니다. 이미 반영되었을 수 있습니다.",
    },
    Ending.INVALID_CALL: {
        Language.ENGLISH: "I could not run {tool}: the call was not valid ({detail}).",
        Language.KOREAN: "{tool} 호출이 올바르지 않아 실행하지 못했습니다 ({detail}).",
    },
    Ending.TOOL_FAILED: {
        Language.ENGLISH: "I stopped: {tool} failed ({detail}).",
        Language.KOREAN: "{tool} 실행에 실패하여 작업을 중단했습니다 ({detail}).",
    },
    Ending.INTERRUPTED: {
        Language.ENGLISH: ("I stopped: the server running {tool} went down while it ran. I did not run it again, "
                           "so that it cannot happen twice; please check whether it took effect."),
        Language.KOREAN: ("{tool} 실행 중 서버가 중단되었습니다. 두 번 실행되지 않도록 다시 실행하지 않았으니, "
                          "반영되었는지 확인해 주세요."),
    },
    Ending.PLANNER_FAILED: {
        Language.ENGLISH: "I could not finish: the language model failed ({detail}). Please try again.",
        Language.KOREAN: "언어 모델 오류로 요청을 끝내지 못했습니다 ({detail}). 다시 시도해 주세요.",
    },
    Ending.INTERNAL: {
        Language.ENGLISH: "I stopped because of an error inside Aura ({detail}). Please try again.",
        Language.KOREAN: "Aura 내부 오류로 작업을 중단했습니다 ({detail}). 다시 시도해 주세요.",
    },
    Ending.SESSION_LOST: {
        Language.ENGLISH: ("This session can no longer continue: Redis no longer holds it "
                           "(it expired, or was lost in a failover). Please send the request again."),
        Language.KOREAN: ("이 세션은 더 이상 계속할 수 없습니다. Redis에 세션이 남아 있지 않습니다 "
                          "(만료되었거나 장애 조치 중 유실됨). 요청을 다시 보내 주세요."),
    },
}


def _clip(text: str) -> str:
    text = " ".join(text.split())  # one paragraph: a multi-line tool error must not break the sentence
    return fit(text, DETAIL_CHARS)


def explain(ending: Ending, language: Language, *, tool: str | None = None, detail: str = "",
            seconds: float = 0.0) -> str:
    return TEXTS[ending][language].format(tool=tool or "tool", detail=_clip(detail), seconds=f"{seconds:g}")
