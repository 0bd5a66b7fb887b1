"""TokenVerifier's cache of verified tokens: hits, expiry with the leeway, and its bound.

A browser sends the same token with every request, so ``principal`` verifies a token once and
answers from the cache until the token's ``exp`` plus the leeway. Written against the survivors
of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt

import aura.auth
from aura.auth import Principal, TokenVerifier
from aura.errors import TokenExpired, TokenInvalid
from tests.support.auth import make_token

SECRET = "a_test_secret_that_is_at_least_256_bits_long_for_HS256_signing"


class CountingVerifier(TokenVerifier):
    """Counts the signature checks behind ``principal``."""

    def __init__(self, secret: str = SECRET, **options: Any) -> None:
        super().__init__(secret, **options)
        self.verified = 0

    def verify(self, token: str) -> dict[str, Any]:
        self.verified += 1
        return super().verify(token)


def token_for(sub: str = "7", tenant: str = "3", *, exp: int | None = None, **extra: Any) -> str:
    if exp is not None:
        extra["exp"] = exp  # make_token's own claims give way to extra ones
    return make_token(sub, tenant, secret=SECRET, **extra)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set the time the cache sees: aura.auth reads ``time.time()``; python-jose reads ``datetime.now``."""

    def set_to(now: float) -> None:
        monkeypatch.setattr(time, "time", lambda: now)

    return set_to


def test_a_token_is_verified_once_and_then_answered_from_the_cache() -> None:
    verifier = CountingVerifier()
    token = token_for()
    assert verifier.principal(token) == Principal(user_id="7", tenant_id="3")
    assert verifier.principal(token) == Principal(user_id="7", tenant_id="3")
    assert verifier.verified == 1
    verifier.principal(token_for(sub="8"))
    assert verifier.verified == 2


def test_the_cache_answers_up_to_exp_plus_the_leeway_and_not_after(clock: Callable[[float], None]) -> None:
    verifier = CountingVerifier(leeway_seconds=10)
    exp = int(time.time()) + 3600
    token = token_for(exp=exp)
    verifier.principal(token)
    clock(exp + 9.5)
    verifier.principal(token)
    clock(exp + 10)  # the last instant the leeway covers
    verifier.principal(token)
    assert verifier.verified == 1
    clock(exp + 10.5)
    verifier.principal(token)  # verified again (python-jose's clock still finds it valid)
    assert verifier.verified == 2


def test_the_default_leeway_is_ten_seconds(clock: Callable[[float], None]) -> None:
    verifier = CountingVerifier()
    exp = int(time.time()) + 3600
    token = token_for(exp=exp)
    verifier.principal(token)
    clock(exp + 10)
    verifier.principal(token)
    assert verifier.verified == 1
    clock(exp + 10.25)
    verifier.principal(token)
    assert verifier.verified == 2


def test_the_cache_is_emptied_when_it_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aura.auth, "_VERIFIED_CACHE_SIZE", 3)
    verifier = CountingVerifier()
    tokens = [token_for(sub=str(n)) for n in range(4)]
    for token in tokens[:3]:
        verifier.principal(token)
    verifier.principal(tokens[0])  # three cached: still a hit
    assert verifier.verified == 3
    verifier.principal(tokens[3])  # the fourth finds the cache full: it is emptied, then holds only this one
    assert verifier.verified == 4
    verifier.principal(tokens[3])
    assert verifier.verified == 4
    verifier.principal(tokens[0])
    assert verifier.verified == 5


def test_a_rejected_token_is_not_cached() -> None:
    verifier = CountingVerifier()
    bad = token_for(sub="")
    for _ in range(2):
        with pytest.raises(TokenInvalid):
            verifier.principal(bad)
    assert verifier.verified == 2


# -- verify's own answers ------------------------------------------------------------------------
def test_a_token_with_an_audience_is_accepted() -> None:
    """dwp-auth-server's tokens may carry ``aud``; Aura does not check it (CONTRACT §2.2)."""
    assert TokenVerifier(SECRET).principal(token_for(aud="dwp-gateway")) == Principal("7", "3")


def test_an_expired_token_says_so() -> None:
    with pytest.raises(TokenExpired) as caught:
        TokenVerifier(SECRET, leeway_seconds=0).verify(token_for(exp=int(time.time()) - 60))
    assert caught.value.message == "Token expired"


def test_a_bad_signature_is_invalid_and_says_why() -> None:
    forged = str(jwt.encode({"sub": "7", "exp": int(time.time()) + 60}, "another_secret" * 4, algorithm="HS256"))
    with pytest.raises(TokenInvalid) as caught:
        TokenVerifier(SECRET).verify(forged)
    assert caught.value.message.startswith("Invalid token: ")
    assert caught.value.message != "Invalid token: "


def test_a_time_claim_that_is_not_a_number_is_invalid_and_says_so() -> None:
    token = str(jwt.encode({"sub": "7", "tenant_id": "3", "exp": int(time.time()) + 60, "iat": []}, SECRET))
    with pytest.raises(TokenInvalid) as caught:
        TokenVerifier(SECRET).verify(token)
    assert caught.value.message == "Invalid token: a time claim is not a number"


@pytest.mark.parametrize("claim", ["sub", "tenant_id"])
def test_a_missing_identity_claim_is_named(claim: str) -> None:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "7", "tenant_id": "3", "exp": now + 60}
    del claims[claim]
    with pytest.raises(TokenInvalid) as caught:
        TokenVerifier(SECRET).principal(str(jwt.encode(claims, SECRET, algorithm="HS256")))
    shown = "tenantId" if claim == "tenant_id" else claim  # without tenant_id, the camelCase name is tried
    assert caught.value.message == f"Invalid token: claim '{shown}' is missing or not a string"
