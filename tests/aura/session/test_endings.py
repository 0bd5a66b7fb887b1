"""The explanatory `content` of every ending without an answer (CONTRACT §3.8), in both languages."""

from __future__ import annotations

import pytest

from aura.session.endings import DETAIL_CHARS, TEXTS, Ending, explain
from aura.session.language import Language


def test_every_ending_has_a_text_in_every_language() -> None:
    assert set(TEXTS) == set(Ending)
    assert all(set(texts) == set(Language) for texts in TEXTS.values())


@pytest.mark.parametrize("ending", list(Ending))
@pytest.mark.parametrize("language", list(Language))
def test_every_text_is_one_short_frame_and_names_what_it_is_given(ending: Ending, language: Language) -> None:
    text = explain(ending, language, tool="send_email", detail="x" * 5000, seconds=280)
    assert 0 < len(text) <= 1000  # one `content` event (MAX_CONTENT_CHARS)
    template = TEXTS[ending][language]
    if "{tool}" in template:
        assert "send_email" in text
    if "{detail}" in template:
        assert "x" * (DETAIL_CHARS - 3) + "..." in text and "x" * DETAIL_CHARS not in text
    if "{seconds}" in template:
        assert "280" in text


def test_a_rejection_in_korean_carries_the_reviewers_reason() -> None:
    text = explain(Ending.REJECTED, Language.KOREAN, tool="send_email", detail="사용자가 작업을 거부했습니다.")
    assert text == "승인이 거부되어 send_email 작업을 실행하지 않았습니다. 사유: 사용자가 작업을 거부했습니다."


def test_a_multi_line_detail_becomes_one_paragraph_and_braces_in_it_are_kept() -> None:
    text = explain(Ending.TOOL_FAILED, Language.ENGLISH, tool="fetch", detail='HTTP 500:\n{"error": "boom"}\n')
    assert text == 'I stopped: fetch failed (HTTP 500: {"error": "boom"}).'


def test_a_timeout_says_how_long_it_waited() -> None:
    assert explain(Ending.TIMED_OUT, Language.ENGLISH, tool="send_email", seconds=0.5) == (
        "I did not run send_email: nobody approved it within 0.5 s, so I withdrew the request.")
    assert explain(Ending.TIMED_OUT, Language.KOREAN, tool="send_email", seconds=280) == (
        "280초 안에 승인되지 않아 요청을 철회했습니다. send_email 작업은 실행하지 않았습니다.")
