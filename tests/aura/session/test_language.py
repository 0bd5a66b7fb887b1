"""Telling a Korean prompt from an English one, for the sentences Aura writes itself."""

from __future__ import annotations

import pytest

from aura.session.language import Language, language_of


@pytest.mark.parametrize(
    ("prompt", "language"),
    [
        pytest.param("kim@example.com 에게 회의 일정 메일 보내줘", Language.KOREAN, id="korean-with-an-address"),
        pytest.param("오늘 할 일 요약해줘", Language.KOREAN, id="korean"),
        pytest.param("Send an email to 김철수 at kim@example.com saying hi", Language.ENGLISH,
                     id="english-naming-a-korean-colleague"),
        pytest.param("Summarize my open tasks", Language.ENGLISH, id="english"),
        pytest.param("ㅎㅎ ok", Language.KOREAN, id="jamo-count-as-hangul"),
        pytest.param("Bonjour, où est mon e-mail ?", Language.ENGLISH, id="any-other-language-is-english"),
    ],
)
def test_the_prompts_letters_decide(prompt: str, language: Language) -> None:
    assert language_of(prompt, {"language": "en-US" if language is Language.KOREAN else "ko-KR"}) is language


@pytest.mark.parametrize(
    ("context", "language"),
    [
        ({"language": "ko-KR"}, Language.KOREAN),
        ({"language": "KO"}, Language.KOREAN),
        ({"language": "en-US"}, Language.ENGLISH),
        ({"language": 7}, Language.ENGLISH),
        ({}, Language.ENGLISH),
        (None, Language.ENGLISH),
    ],
)
def test_a_prompt_without_letters_falls_back_to_the_browsers_language(
    context: dict[str, object] | None, language: Language
) -> None:
    assert language_of("1234 ?!", context) is language
