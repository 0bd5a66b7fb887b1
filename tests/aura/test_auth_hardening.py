"""TokenVerifier against hostile tokens: ill-typed time claims, parser-breaking headers, huge tokens.

Every such token is TokenInvalid (401 E2003): never accepted, never "expired", never a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any, NoReturn

import jose.jwt
import pytest

from aura.auth import MAX_TOKEN_LENGTH, Authenticator, Principal, TokenVerifier
from aura.errors import TokenInvalid
from tests.support.auth import SECRET, b64url, hand_token, now_claims


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET, leeway_seconds=10)


def refused_as_invalid(verifier: TokenVerifier, token: str) -> TokenInvalid:
    with pytest.raises(TokenInvalid) as info:
        verifier.principal(token)
    assert (info.value.status_code, info.value.error_code) == (401, "E2003")
    return info.value


# -- exp / iat / nbf must be NumericDate numbers ---------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": "99999999999999999999"},  # python-jose int()s it: a token that never expires
        {"exp": str(int(time.time()) + 3600)},
        {"exp": True},  # int(True) == 1: python-jose calls it expired
        {"exp": False},
        {"exp": "1"},  # a string in the past: python-jose calls it expired
        {"exp": 10**400},  # a JSON int python-jose accepts but float() cannot hold
        {"iat": "5"},
        {"iat": True},
        {"nbf": "5"},
        {"nbf": False},
    ],
    ids=lambda b: json.dumps(b)[:40],
)
def test_time_claims_that_are_strings_bools_or_beyond_float_are_token_invalid(
    verifier: TokenVerifier, bad: dict[str, Any]
) -> None:
    error = refused_as_invalid(verifier, hand_token(now_claims(**bad)))
    assert "NumericDate" in error.message


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_time_claims_are_token_invalid(verifier: TokenVerifier, name: str, literal: str) -> None:
    """Python's JSON parses these non-JSON literals; they are no NumericDate either (pinned, not a regression)."""
    claims = {"sub": "1", "tenant_id": "1", "iat": int(time.time()), "exp": int(time.time()) + 3600}
    body = json.dumps({**claims, name: "@"}).replace('"@"', literal).encode()
    refused_as_invalid(verifier, hand_token(None, raw_claims=body))


def test_float_and_int_time_claims_are_still_accepted(verifier: TokenVerifier) -> None:
    now = time.time()
    token = hand_token(now_claims(iat=now, nbf=int(now) - 1, exp=now + 60.5))
    assert verifier.principal(token) == Principal("1", "1")


# -- malformed tokens that break python-jose --------------------------------------------------------


NESTED_BRACKETS = f"{b64url(b'[' * 1000)}.e30.x"


def test_a_header_of_1000_nested_brackets_is_token_invalid_not_a_recursion_error(verifier: TokenVerifier) -> None:
    assert len(NESTED_BRACKETS) < MAX_TOKEN_LENGTH  # reaches the parser: not refused for its length
    error = refused_as_invalid(verifier, NESTED_BRACKETS)
    assert error.__cause__ is None and error.__suppress_context__  # no RecursionError traceback rides along


def test_a_bearer_header_of_nested_brackets_is_401_e2003() -> None:
    authenticator = Authenticator(TokenVerifier(SECRET))
    with pytest.raises(TokenInvalid) as info:
        authenticator.caller({"authorization": f"Bearer {NESTED_BRACKETS}", "x-tenant-id": "1"})
    assert (info.value.status_code, info.value.error_code) == (401, "E2003")


@pytest.mark.parametrize("raised", [RecursionError("deep"), RuntimeError("boom"), KeyError("alg"), AttributeError("x")])
def test_any_exception_from_python_jose_becomes_token_invalid(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    def explode(*args: object, **kwargs: object) -> NoReturn:
        raise raised

    monkeypatch.setattr(jose.jwt, "decode", explode)
    error = refused_as_invalid(verifier, hand_token(now_claims()))
    assert type(raised).__name__ in error.message
    assert error.__cause__ is None and error.__suppress_context__


# -- the length bound ---------------------------------------------------------------------------------


def padded_token(length: int) -> str:
    """A valid token of exactly ``length`` characters (a ``pad`` claim makes up the size)."""
    for pad in range(length):
        token = hand_token(now_claims(pad="x" * pad))
        if len(token) >= length:
            assert len(token) == length, "length not reachable with this header"
            return token
    raise AssertionError("unreachable")


def test_a_token_longer_than_8_kib_is_token_invalid_before_parsing(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_TOKEN_LENGTH == 8192
    token = padded_token(MAX_TOKEN_LENGTH + 3)  # signed and otherwise valid

    def must_not_parse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a too-long token reached python-jose")

    monkeypatch.setattr(jose.jwt, "decode", must_not_parse)
    error = refused_as_invalid(verifier, token)
    assert "longer than 8192" in error.message


def test_a_token_of_exactly_8_kib_is_accepted(verifier: TokenVerifier) -> None:
    assert verifier.principal(padded_token(MAX_TOKEN_LENGTH)) == Principal("1", "1")
