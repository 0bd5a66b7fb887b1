"""Issue 10 items 8 and 10: the tokens Aura mints as a user, and the optional iss/aud checks.

A session keeps a Delegation (claims, no token); each DWP call gets a token minted from it,
``azp: aura``, never outliving the user's own. AURA_JWT_ISSUER / AURA_JWT_AUDIENCE, when set,
make the verifier demand that ``iss`` / ``aud`` (off by default: dwp-auth-server sets neither).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from jose import jwt

from aura.auth import (
    DELEGATED_PARTY,
    Authenticator,
    Delegation,
    Delegator,
    Principal,
    StoredToken,
    TokenVerifier,
)
from aura.errors import TokenExpired, TokenInvalid
from tests.support.auth import OTHER_SECRET, SECRET, bearer, hand_token, make_token, now_claims, some_headers
from tests.support.delegated_tokens import delegated_claims
from tests.support.live_server import LiveServer

NOW = 1_900_000_000  # a fixed "now" for minting: python-jose is not asked to check these tokens' times


def claims_of(token: str) -> dict[str, Any]:
    """The token's claims, its signature checked with the suite's secret (times not checked)."""
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"],
                                         options={"verify_exp": False, "verify_iat": False, "verify_aud": False})
    return decoded


# -- what a session keeps ----------------------------------------------------------------------
def test_a_delegation_keeps_every_claim_but_the_ones_that_make_one_token() -> None:
    claims = {"sub": "7", "tenant_id": "3", "email": "kim@example.com", "role": "user", "iss": "dwp", "aud": ["a", "b"],
              "exp": NOW + 3600, "iat": NOW, "nbf": NOW, "jti": "once"}
    delegation = Delegation.of(claims)
    assert delegation == Delegation(
        {"sub": "7", "tenant_id": "3", "email": "kim@example.com", "role": "user", "iss": "dwp", "aud": ["a", "b"]},
        NOW + 3600,
    )
    assert Delegation.decode(delegation.encode()) == delegation


def test_a_fractional_exp_is_rounded_down_so_nothing_outlives_it() -> None:
    assert Delegation.of({"sub": "7", "exp": NOW + 0.9}).expires_at == NOW


def test_the_verifier_gives_the_delegation_of_a_token() -> None:
    token = make_token("7", "3", email="kim@example.com")
    verified = TokenVerifier(SECRET).check(token)
    assert verified.principal == Principal("7", "3")
    assert verified.delegation.claims == {"sub": "7", "tenant_id": "3", "email": "kim@example.com"}
    assert verified.delegation.expires_at == jwt.get_unverified_claims(token)["exp"]


def test_a_stored_token_never_shows_in_its_repr() -> None:
    assert repr(StoredToken("eyJ.secret.part")) == "StoredToken(<redacted>)"


# -- minting ----------------------------------------------------------------------------------------
def test_a_minted_token_has_the_claims_azp_aura_iat_now_and_a_short_exp() -> None:
    delegation = Delegation({"sub": "7", "tenant_id": "3", "email": "kim@example.com"}, NOW + 3600)
    token = TokenVerifier(SECRET).delegate(delegation, lifetime_seconds=120, now=NOW + 0.7)
    assert claims_of(token) == {"sub": "7", "tenant_id": "3", "email": "kim@example.com",
                                "azp": DELEGATED_PARTY, "iat": NOW, "exp": NOW + 120}
    assert DELEGATED_PARTY == "aura"
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_minted_token_never_outlives_the_users_own() -> None:
    delegation = Delegation({"sub": "7", "tenant_id": "3"}, NOW + 30)
    token = TokenVerifier(SECRET).delegate(delegation, lifetime_seconds=120, now=NOW)
    assert claims_of(token)["exp"] == NOW + 30


@pytest.mark.parametrize("late", [0, 1, 3600])
def test_no_token_is_minted_once_the_users_token_expired(late: int) -> None:
    """Forwarding the user's expired token would get 401 from DWP (CONTRACT §2.4): none is made at all."""
    delegation = Delegation({"sub": "7", "tenant_id": "3"}, NOW)
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET).delegate(delegation, lifetime_seconds=120, now=NOW + late)


def test_an_azp_of_the_users_token_is_replaced() -> None:
    delegation = Delegation({"sub": "7", "tenant_id": "3", "azp": "frontend"}, NOW + 3600)
    assert claims_of(TokenVerifier(SECRET).delegate(delegation, lifetime_seconds=60, now=NOW))["azp"] == "aura"


def test_minted_tokens_are_accepted_by_the_verifier_like_any_other() -> None:
    verifier = TokenVerifier(SECRET)
    token = verifier.check(make_token("7", "3", role="user")).delegation
    minted = verifier.delegate(token, lifetime_seconds=120)
    assert verifier.principal(minted) == Principal("7", "3")
    assert Authenticator(verifier).caller(some_headers(minted, "3", "7")) is not None
    assert verifier.check(minted).delegation.claims == {"sub": "7", "tenant_id": "3", "role": "user", "azp": "aura"}


def test_a_token_minted_from_a_token_is_minted_again_with_the_same_claims() -> None:
    """A delegated token presented to Aura (a DWP service calling back) delegates as well, without growing."""
    verifier = TokenVerifier(SECRET)
    first = verifier.delegate(verifier.check(make_token("7", "3")).delegation, lifetime_seconds=120)
    second = verifier.delegate(verifier.check(first).delegation, lifetime_seconds=120)
    assert set(claims_of(second)) == {"sub", "tenant_id", "azp", "iat", "exp"}


def test_the_delegator_mints_with_the_configured_lifetime_as_a_bearer_header() -> None:
    delegation = Delegation({"sub": "7", "tenant_id": "3"}, int(time.time()) + 3600)
    before = int(time.time())
    delegator = Delegator(TokenVerifier(SECRET), lifetime_seconds=45)
    claims = delegated_claims(delegator.authorization(delegation, Principal(user_id="7", tenant_id="3")))
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 45


@pytest.mark.parametrize("owner", [Principal(user_id="8", tenant_id="3"), Principal(user_id="7", tenant_id="4")])
def test_a_delegation_naming_another_user_than_the_sessions_owner_mints_nothing(owner: Principal) -> None:
    """A snapshot edited in Redis (its delegation swapped for another user's claims) must not make Aura
    mint tokens as that user for the session's owner's calls."""
    delegation = Delegation({"sub": "7", "tenant_id": "3"}, int(time.time()) + 3600)
    delegator = Delegator(TokenVerifier(SECRET), lifetime_seconds=45)
    with pytest.raises(TokenInvalid, match="names another user than the session's owner"):
        delegator.authorization(delegation, owner)


def test_each_mint_is_a_new_token() -> None:
    delegation = Delegation({"sub": "7", "tenant_id": "3"}, NOW + 3600)
    verifier = TokenVerifier(SECRET)
    assert verifier.delegate(delegation, lifetime_seconds=60, now=NOW) != verifier.delegate(
        delegation, lifetime_seconds=60, now=NOW + 1)


# -- a token an older version stored ----------------------------------------------------------------
def test_a_stored_token_that_verifies_is_minted_from_its_claims() -> None:
    stored = make_token("7", "3", email="kim@example.com")
    minted = TokenVerifier(SECRET).delegate(StoredToken(stored), lifetime_seconds=120)
    assert minted != stored
    claims = claims_of(minted)
    assert (claims["sub"], claims["tenant_id"], claims["email"], claims["azp"]) == ("7", "3", "kim@example.com", "aura")
    assert claims["exp"] <= jwt.get_unverified_claims(stored)["exp"]


def test_a_stored_token_that_expired_mints_nothing() -> None:
    stored = make_token("7", "3", lifetime=-60)
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET, leeway_seconds=10).delegate(StoredToken(stored), lifetime_seconds=120)


def test_a_stored_token_within_the_leeway_still_mints_nothing() -> None:
    """The verifier's leeway is for clocks; the token is expired for DWP (main-service has none)."""
    stored = make_token("7", "3", lifetime=-3)
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET, leeway_seconds=10).delegate(StoredToken(stored), lifetime_seconds=120)


def test_a_stored_token_signed_with_another_secret_mints_nothing() -> None:
    with pytest.raises(TokenInvalid):
        TokenVerifier(SECRET).delegate(StoredToken(make_token("7", "3", secret=OTHER_SECRET)), lifetime_seconds=120)


# -- iss / aud (issue 10 item 10) ----------------------------------------------------------------------
@pytest.mark.parametrize("extra", [{}, {"iss": "anyone"}, {"aud": "any"}, {"aud": ["x", "y"]}, {"iss": 7, "aud": 7}])
def test_by_default_any_or_no_iss_and_aud_is_accepted(extra: dict[str, Any]) -> None:
    """dwp-auth-server's tokens carry neither (CONTRACT §2.2): the checks are off unless configured."""
    assert TokenVerifier(SECRET).principal(hand_token(now_claims(**extra))) == Principal("1", "1")


@pytest.mark.parametrize("iss", ["https://auth.dwp", "https://auth.dwp/"])
def test_a_configured_issuer_is_required_exactly(iss: str) -> None:
    verifier = TokenVerifier(SECRET, issuer="https://auth.dwp")
    token = hand_token(now_claims(iss=iss))
    if iss == "https://auth.dwp":
        assert verifier.principal(token) == Principal("1", "1")
    else:
        with pytest.raises(TokenInvalid) as caught:
            verifier.principal(token)
        assert caught.value.message == "Invalid token: claim 'iss' is not the expected issuer"


@pytest.mark.parametrize("iss", [..., None, "", "HTTPS://AUTH.DWP", ["https://auth.dwp"], 1])
def test_a_missing_or_other_issuer_is_401_e2003(iss: Any) -> None:
    with pytest.raises(TokenInvalid) as caught:
        TokenVerifier(SECRET, issuer="https://auth.dwp").principal(hand_token(now_claims(iss=iss)))
    assert (caught.value.status_code, caught.value.error_code) == (401, "E2003")
    assert caught.value.message.startswith("Invalid token: ")


@pytest.mark.parametrize("aud", ["aura", ["aura"], ["dwp-gateway", "aura"]])
def test_a_configured_audience_may_be_the_aud_or_one_of_its_list(aud: Any) -> None:
    """RFC 7519 §4.1.3: aud is one string or an array of strings."""
    assert TokenVerifier(SECRET, audience="aura").principal(hand_token(now_claims(aud=aud))) == Principal("1", "1")


@pytest.mark.parametrize("aud", [..., None, "", "Aura", "aura ", ["dwp-gateway"], [], [["aura"]], {"aura": 1}, 1])
def test_an_audience_that_does_not_contain_the_configured_one_is_401_e2003(aud: Any) -> None:
    with pytest.raises(TokenInvalid) as caught:
        TokenVerifier(SECRET, audience="aura").principal(hand_token(now_claims(aud=aud)))
    assert caught.value.message == "Invalid token: claim 'aud' does not contain the expected audience"
    assert (caught.value.status_code, caught.value.error_code) == (401, "E2003")


def test_issuer_and_audience_are_both_checked_when_both_are_set() -> None:
    verifier = TokenVerifier(SECRET, issuer="dwp", audience="aura")
    assert verifier.principal(hand_token(now_claims(iss="dwp", aud="aura"))) == Principal("1", "1")
    for claims in (now_claims(iss="dwp"), now_claims(aud="aura"), now_claims(iss="other", aud="aura")):
        with pytest.raises(TokenInvalid):
            verifier.principal(hand_token(claims))


def test_a_minted_token_keeps_iss_and_aud_so_a_checking_verifier_accepts_it() -> None:
    verifier = TokenVerifier(SECRET, issuer="dwp", audience="aura")
    delegation = verifier.check(hand_token(now_claims(iss="dwp", aud=["aura", "gw"]))).delegation
    minted = verifier.delegate(delegation, lifetime_seconds=120)
    assert verifier.principal(minted) == Principal("1", "1")
    assert claims_of(minted)["aud"] == ["aura", "gw"]


def test_the_checks_apply_to_the_stream_and_session_api_callers() -> None:
    authenticator = Authenticator(TokenVerifier(SECRET, issuer="dwp"))
    with pytest.raises(TokenInvalid):
        authenticator.caller(some_headers(make_token("1", "1"), "1", None))
    assert authenticator.caller(some_headers(make_token("1", "1", iss="dwp"), "1", None)) is not None


# -- the settings, through a real server ---------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("extra", [{}, {"iss": "https://anyone"}, {"aud": ["dwp-gateway"]}])
async def test_a_default_server_accepts_tokens_with_any_or_no_iss_and_aud(client: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    response = await client.get("/aura/sessions/sess_0123456789abcdef01234567",
                                headers=bearer(make_token("1", "1", **extra)))
    assert response.status_code == 404  # authenticated: the session is unknown (E1004), not a 401
    assert response.json()["errorCode"] == "E1004"


@pytest.mark.anyio
async def test_a_server_with_an_issuer_and_an_audience_answers_401_e2003_to_other_tokens(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(jwt_issuer="https://auth.dwp", jwt_audience="aura")
    path = "/aura/sessions/sess_0123456789abcdef01234567"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        refused: list[tuple[dict[str, Any], str]] = [
            ({"aud": "aura"}, "Invalid token: claim 'iss' is not the expected issuer"),
            ({"iss": "https://auth.dwp"}, "Invalid token: claim 'aud' does not contain the expected audience"),
            ({"iss": "https://auth.dwp", "aud": ["gw"]}, "Invalid token: claim 'aud' does not contain the expected audience"),
        ]
        for claims, message in refused:
            response = await http.get(path, headers=bearer(make_token("1", "1", **claims)))
            assert response.status_code == 401
            assert (response.json()["errorCode"], response.json()["message"]) == ("E2003", message)
        ok = await http.get(path, headers=bearer(make_token("1", "1", iss="https://auth.dwp", aud=["gw", "aura"])))
        assert ok.status_code == 404
