"""The language a user wrote in, for the few sentences Aura itself writes to them.

Only Korean and English are told apart: DWP's users write Korean, and everything
Aura says otherwise is English. The prompt decides; the page's ``context.language``
(the browser's, e.g. ``ko-KR``) only when the prompt has no letters at all.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

# A Hangul syllable carries about as much as two or three Latin letters, so a prompt is Korean
# once a fifth of its letters are Hangul: "kim@example.com 에게 메일 보내줘" is, while an English
# sentence that names a Korean colleague is not.
KOREAN_SHARE: Final = 0.2


class Language(str, enum.Enum):
    ENGLISH = "en"
    KOREAN = "ko"


def _is_hangul(char: str) -> bool:
    code = ord(char)
    return 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def language_of(prompt: str, context: Mapping[str, Any] | None = None) -> Language:
    hangul = latin = 0
    for char in prompt:
        if _is_hangul(char):
            hangul += 1
        elif char.isascii() and char.isalpha():
            latin += 1
    if hangul + latin == 0:
        browser = context.get("language") if context else None
        return Language.KOREAN if isinstance(browser, str) and browser.lower().startswith("ko") else Language.ENGLISH
    return Language.KOREAN if hangul >= KOREAN_SHARE * (hangul + latin) else Language.ENGLISH
