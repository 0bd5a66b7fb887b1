"""Unit tests of aura/auth.py, without a server (CONTRACT §2.1-2.4)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, tzinfo
from types import SimpleNamespace
from typing import Any, Self

import jose.jwt
import pytest
from jose import jwt
from starlette.datastructures import Headers

import aura.auth
from aura.auth import (
    Principal,
    TokenVerifier,
    authenticate_approver,
    bearer_token,
    check_principal,
    tenant_header,
)
from aura.ids import parse_long
from aura.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    TenantMissing,
    TokenExpired,
    TokenInvalid,
    Unauthorized,
)
from tests.support.auth import OTHER_SECRET, SECRET, Digest, b64url, compact, hand_token, make_token, now_claims, some_headers


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET, leeway_seconds=10)


def assert_api_error(exc: ApiError, status: int, code: str) -> None:
    assert (exc.status_code, exc.error_code) == (status, code)


# -- TokenVerifier: accepted tokens ------------------------------------------------------------


def test_s2_2_auth_server_shaped_token_without_typ_is_accepted(verifier: TokenVerifier) -> None:
    """CONTRACT §2.1/2.2: jjwt header {"alg":"HS256"} (no typ), sub/tenant_id digit strings, int iat/exp."""
    token = hand_token(now_claims(), {"alg": "HS256"})
    assert jwt.get_unverified_header(token) == {"alg": "HS256"}  # the input really is jjwt's: no typ
    assert verifier.principal(token) == Principal(user_id="1", tenant_id="1")


def test_s2_1_python_made_token_with_typ_is_accepted(verifier: TokenVerifier) -> None:
    token = make_token("backend_user_001", "tenant1", email="user@dwp.com", role="user")
    assert verifier.principal(token) == Principal("backend_user_001", "tenant1")
    assert verifier.verify(token)["email"] == "user@dwp.com"


def test_s2_2_numeric_tenant_claim_is_normalised_with_str(verifier: TokenVerifier) -> None:
    assert verifier.principal(make_token("7", 1)).tenant_id == "1"
    assert verifier.principal(make_token("7", 0)).tenant_id == "0"


def test_s2_2_tenant_id_alternative_claim_name_tenantId(verifier: TokenVerifier) -> None:
    token = hand_token(now_claims(tenant_id=..., tenantId="42"))
    assert verifier.principal(token) == Principal("1", "42")


def test_issue_mints_a_token_the_verifier_accepts(verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = verifier.issue(sub="5", tenant_id="9", lifetime_seconds=60, now=now)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert verifier.verify(token) == {"sub": "5", "tenant_id": "9", "iat": now, "exp": now + 60}


def test_key_is_the_raw_utf8_bytes_of_the_secret(verifier: TokenVerifier) -> None:
    """CONTRACT §2.1: no base64 decoding of the secret anywhere."""
    token = hand_token(now_claims())  # signed with hmac over SECRET.encode("utf-8")
    assert verifier.verify(token)["sub"] == "1"
    korean = "비밀키_비밀키_비밀키_비밀키_비밀키_비밀키"
    assert TokenVerifier(korean).principal(hand_token(now_claims(), secret=korean)).user_id == "1"


# -- TokenVerifier: expiry -----------------------------------------------------------------------


def test_expired_token_raises_token_expired_e2002(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenExpired) as info:
        verifier.verify(make_token(lifetime=-60))
    assert_api_error(info.value, 401, "E2002")


def test_leeway_accepts_a_just_expired_token_only_within_leeway() -> None:
    now = int(time.time())
    token = hand_token(now_claims(iat=now - 100, exp=now - 5))
    assert TokenVerifier(SECRET, leeway_seconds=10).verify(token)["sub"] == "1"
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET, leeway_seconds=0).verify(token)


def test_missing_exp_is_token_invalid_not_accepted(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(hand_token(now_claims(exp=...)))
    assert_api_error(info.value, 401, "E2003")


class Clock:
    """Moves "now" for the verifier's cache (``aura.auth.time``) and python-jose's exp check together."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        clock = self
        real_time = time.time

        class TravelledDatetime(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Self:
                return cls.fromtimestamp(real_time() + clock.offset, tz)

        monkeypatch.setattr(aura.auth, "time", SimpleNamespace(time=lambda: real_time() + clock.offset))
        monkeypatch.setattr(jose.jwt, "datetime", TravelledDatetime)

    def travel(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    yield Clock(monkeypatch)


def test_clock_moves_python_jose_too(clock: Clock) -> None:
    """The time travel below is only meaningful if the uncached path sees the same clock."""
    token = make_token(lifetime=60)
    fresh = TokenVerifier(SECRET, leeway_seconds=10)
    clock.travel(65)  # past exp, within the leeway
    assert fresh.principal(token) == Principal("1", "1")
    clock.travel(10)  # past exp + leeway
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET, leeway_seconds=10).principal(token)


def test_a_cached_token_is_refused_once_it_expires(clock: Clock) -> None:
    """The verified-token cache must not outlive ``exp`` (+ leeway): a cached token expires like any other."""
    verifier = TokenVerifier(SECRET, leeway_seconds=10)
    token = make_token(lifetime=60)
    assert verifier.principal(token) == Principal("1", "1")  # verified and cached
    clock.travel(30)
    assert verifier.principal(token) == Principal("1", "1")  # from the cache, still valid
    clock.travel(45)  # 75 s on: past exp + leeway
    with pytest.raises(TokenExpired) as info:
        verifier.principal(token)
    assert_api_error(info.value, 401, "E2002")
    with pytest.raises(TokenExpired):  # and stays refused: the expired entry is not served again
        verifier.principal(token)


def test_a_cached_token_is_refused_past_exp_without_leeway(clock: Clock) -> None:
    verifier = TokenVerifier(SECRET, leeway_seconds=0)
    token = make_token(lifetime=1)
    assert verifier.principal(token).user_id == "1"
    clock.travel(3)
    with pytest.raises(TokenExpired):
        verifier.principal(token)


def test_approver_with_a_cached_token_that_expired_is_401_e2002(clock: Clock) -> None:
    verifier = TokenVerifier(SECRET, leeway_seconds=10)
    headers = approver(make_token(lifetime=60))
    assert authenticate_approver(verifier, headers)[0] == Principal("1", "1")
    clock.travel(75)
    with pytest.raises(TokenExpired):
        authenticate_approver(verifier, headers)


# -- TokenVerifier: forged / malformed tokens -----------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "!!!.???.***",
    ],
)
def test_garbage_tokens_are_token_invalid(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_wrong_signature_other_secret_is_token_invalid(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid):
        verifier.verify(make_token(secret=OTHER_SECRET))


def test_tampered_claims_keep_old_signature_is_token_invalid(verifier: TokenVerifier) -> None:
    head, _, sig = make_token("1", "1").split(".")
    forged_claims = b64url(compact(now_claims(sub="admin", tenant_id="2")))
    with pytest.raises(TokenInvalid):
        verifier.verify(f"{head}.{forged_claims}.{sig}")


def test_alg_none_is_token_invalid(verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        unsigned = f"{b64url(compact({'alg': alg, 'typ': 'JWT'}))}.{b64url(compact(now_claims()))}."
        with pytest.raises(TokenInvalid):
            verifier.verify(unsigned)


@pytest.mark.parametrize("alg,digest", [("HS512", hashlib.sha512), ("HS384", hashlib.sha384)])
def test_other_hmac_algorithms_with_the_right_secret_are_token_invalid(
    verifier: TokenVerifier, alg: str, digest: Digest
) -> None:
    """CONTRACT §2.1: pinned to HS256, like auth-server's NimbusJwtDecoder."""
    token = hand_token(now_claims(), {"alg": alg, "typ": "JWT"}, digest=digest)
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_rs256_header_with_hmac_signature_algorithm_confusion_is_token_invalid(verifier: TokenVerifier) -> None:
    token = hand_token(now_claims(), {"alg": "RS256", "typ": "JWT"})
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "kid": "../../../../dev/null"},
        {"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"attacker-key-attacker-key-attacker")}},
        {"alg": "HS256", "jku": "http://127.0.0.1:1/jwks.json"},
        {"alg": "HS256", "crit": ["exp"], "typ": "JWT"},
        {"alg": ["HS256"]},
        {"alg": {"HS256": True}},
        {"alg": None},
        {"alg": 256},
        {"alg": "HS256 "},
        {"alg": "hs256"},
        {},
        ["HS256"],
        "HS256",
    ],
    ids=lambda h: json.dumps(h),
)
def test_crafted_headers_signed_with_an_attacker_key_are_token_invalid(verifier: TokenVerifier, header: Any) -> None:
    token = hand_token(now_claims(), header, secret="attacker-key-attacker-key-attacker")
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_jwk_error_inside_python_jose_becomes_token_invalid_not_a_crash() -> None:
    """python-jose raises JWKError for a PEM/SSH-looking or JWK-JSON HMAC key; must map to E2003."""
    for secret in (
        "-----BEGIN PUBLIC KEY-----MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host",
        '{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1Wl"}',
    ):
        with pytest.raises(TokenInvalid) as info:
            TokenVerifier(secret).verify(hand_token(now_claims(), secret=secret))
        assert_api_error(info.value, 401, "E2003")


def test_claims_that_are_not_an_object_are_token_invalid(verifier: TokenVerifier) -> None:
    for raw in (b"[1,2]", b'"sub"', b"null", b"not json", b"\xff\xfe"):
        with pytest.raises(TokenInvalid):
            verifier.verify(hand_token(None, raw_claims=raw))


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": None},
        {"exp": [1]},
        {"exp": {"seconds": 1}},
        {"exp": "soon"},
        {"iat": None},
        {"iat": []},
        {"nbf": None},
    ],
    ids=lambda b: json.dumps(b),
)
def test_ill_typed_time_claims_with_a_valid_signature_are_token_invalid_not_a_crash(
    verifier: TokenVerifier, bad: dict[str, Any]
) -> None:
    """Any JWT the verifier cannot use must be TokenInvalid (401 E2003), never a TypeError (500)."""
    with pytest.raises(TokenInvalid):
        verifier.verify(hand_token(now_claims(**bad)))


def test_exp_overflowing_to_infinity_is_token_invalid_not_a_crash(verifier: TokenVerifier) -> None:
    now = int(time.time())
    raw = f'{{"sub":"1","tenant_id":"1","iat":{now},"exp":1e400}}'.encode()
    with pytest.raises(TokenInvalid):
        verifier.verify(hand_token(None, raw_claims=raw))


# -- TokenVerifier.principal: claim rules -------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"tenant_id": ...},
        {"tenant_id": None},
        {"tenant_id": ""},
        {"tenant_id": True},
        {"tenant_id": False},
        {"tenant_id": 1.5},
        {"tenant_id": [1]},
        {"tenant_id": {"id": 1}},
        {"tenant_id": ..., "tenantId": True},
        {"sub": ...},
        {"sub": ""},
        {"sub": True},
        {"sub": 7},
        {"sub": None},
    ],
    ids=lambda o: repr(o),
)
def test_missing_or_ill_typed_sub_and_tenant_claims_are_token_invalid(
    verifier: TokenVerifier, overrides: dict[str, Any]
) -> None:
    with pytest.raises(TokenInvalid) as info:
        verifier.principal(hand_token(now_claims(**overrides)))
    assert_api_error(info.value, 401, "E2003")


def test_token_without_tenant_from_conftest_helper_is_token_invalid(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid):
        verifier.principal(make_token("1", None))


# -- bearer_token --------------------------------------------------------------------------------


def test_bearer_token_absent_or_blank_header_is_none() -> None:
    assert bearer_token(Headers(headers={})) is None
    assert bearer_token(Headers(headers={"Authorization": ""})) is None
    assert bearer_token(Headers(headers={"Authorization": "   "})) is None


@pytest.mark.parametrize(
    "value,token",
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("Bearer   abc  ", "abc"),
        ("  Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
    ],
)
def test_bearer_token_extracts_the_token(value: str, token: str) -> None:
    assert bearer_token(Headers(headers={"Authorization": value})) == token


@pytest.mark.parametrize("value", ["Basic xxx", "Bearer", "Bearer    ", "Token abc", "abc.def.ghi", "Bearerabc"])
def test_bearer_token_other_schemes_are_unauthorized_e2000(value: str) -> None:
    with pytest.raises(Unauthorized) as info:
        bearer_token(Headers(headers={"Authorization": value}))
    assert_api_error(info.value, 401, "E2000")


def test_tenant_header_missing_or_blank_is_tenant_missing_e2006() -> None:
    for headers in ({}, {"X-Tenant-ID": ""}, {"X-Tenant-ID": "   "}):
        with pytest.raises(TenantMissing) as info:
            tenant_header(Headers(headers=headers))
        assert_api_error(info.value, 400, "E2006")
    assert tenant_header(Headers(headers={"x-tenant-id": " 1 "})) == "1"


# -- check_principal (stream) --------------------------------------------------------------------


def test_check_principal_tenant_mismatch_is_forbidden_e2001() -> None:
    with pytest.raises(Forbidden) as info:
        check_principal(Principal("1", "1"), Headers(headers={}), "2")
    assert_api_error(info.value, 403, "E2001")
    assert info.value.message == "Tenant ID mismatch"


def test_check_principal_tenant_compare_is_string_wise() -> None:
    """CONTRACT §2.2: compare as strings after str() of the claim; "01" is not "1"."""
    with pytest.raises(Forbidden):
        check_principal(Principal("1", "1"), Headers(headers={}), "01")
    check_principal(Principal("1", "tenant1"), Headers(headers={}), "tenant1")


def test_check_principal_user_header_is_optional_but_must_match_sub() -> None:
    check_principal(Principal("1", "1"), Headers(headers={}), "1")
    check_principal(Principal("1", "1"), Headers(headers={"X-User-ID": "1"}), "1")
    check_principal(Principal("1", "1"), Headers(headers={"X-User-ID": " 1 "}), "1")
    with pytest.raises(Forbidden) as info:
        check_principal(Principal("1", "1"), Headers(headers={"X-User-ID": "2"}), "1")
    assert_api_error(info.value, 403, "E2001")
    assert info.value.message == "User ID mismatch"


# -- authenticate_approver (main-service interceptor order, CONTRACT §2.4) ------------------------


def approver(token: str | None = None, tenant: str | None = "1", user: str | None = "1") -> Headers:
    return Headers(headers=some_headers(token, tenant, user))


def test_approver_happy_path_returns_principal_and_long_tenant(verifier: TokenVerifier) -> None:
    principal, tenant = authenticate_approver(verifier, approver(make_token("1", "1")))
    assert principal == Principal("1", "1") and tenant == 1 and isinstance(tenant, int)


def test_approver_numeric_claim_matches_digit_header(verifier: TokenVerifier) -> None:
    assert authenticate_approver(verifier, approver(make_token("1", 12), tenant="12"))[1] == 12


def test_approver_missing_authorization_first_even_without_other_headers(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthorized) as info:
        authenticate_approver(verifier, approver(None, tenant=None, user=None))
    assert_api_error(info.value, 401, "E2000")


def test_approver_non_bearer_authorization_is_e2000(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthorized):
        authenticate_approver(verifier, Headers(headers={"Authorization": "Basic eHg6eXk=", "X-Tenant-ID": "1"}))


def test_approver_token_checked_before_headers(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenExpired):
        authenticate_approver(verifier, approver(make_token(lifetime=-60), tenant=None, user=None))
    with pytest.raises(TokenInvalid):
        authenticate_approver(verifier, approver("garbage", tenant=None, user=None))


def test_approver_missing_tenant_is_unauthorized_e2000_not_e2006(verifier: TokenVerifier) -> None:
    for tenant in (None, "", "  "):
        with pytest.raises(Unauthorized) as info:
            authenticate_approver(verifier, approver(make_token(), tenant=tenant, user=None))
        assert_api_error(info.value, 401, "E2000")


def test_approver_tenant_mismatch_before_missing_user(verifier: TokenVerifier) -> None:
    with pytest.raises(Forbidden) as info:
        authenticate_approver(verifier, approver(make_token("1", "1"), tenant="2", user=None))
    assert info.value.message == "Tenant ID mismatch"


def test_approver_missing_user_is_unauthorized_e2000(verifier: TokenVerifier) -> None:
    for user in (None, "", " "):
        with pytest.raises(Unauthorized) as info:
            authenticate_approver(verifier, approver(make_token(), user=user))
        assert_api_error(info.value, 401, "E2000")


def test_approver_user_mismatch_before_long_binding(verifier: TokenVerifier) -> None:
    with pytest.raises(Forbidden) as info:
        authenticate_approver(verifier, approver(make_token("1", "tenant1"), tenant="tenant1", user="2"))
    assert info.value.message == "User ID mismatch"


def test_approver_non_numeric_tenant_matching_claim_is_bad_request_e1001(verifier: TokenVerifier) -> None:
    with pytest.raises(BadRequest) as info:
        authenticate_approver(verifier, approver(make_token("1", "tenant1"), tenant="tenant1"))
    assert_api_error(info.value, 400, "E1001")


def test_approver_tenant_beyond_long_range_is_bad_request(verifier: TokenVerifier) -> None:
    big = str(2**63)
    with pytest.raises(BadRequest):
        authenticate_approver(verifier, approver(make_token("1", big), tenant=big))


# -- parse_long (Java Long.parseLong) --------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("1", 1),
        ("+1", 1),
        ("-1", -1),
        ("0", 0),
        ("-0", 0),
        ("007", 7),
        (str(2**63 - 1), 2**63 - 1),
        (str(-(2**63)), -(2**63)),
    ],
)
def test_parse_long_accepts_what_java_accepts(text: str, value: int) -> None:
    assert parse_long(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "-",
        " 1",
        "1 ",
        "1\n",
        "\n1",
        "1_0",
        "1.0",
        "1e3",
        "0x10",
        "+-1",
        "--1",
        "١",
        "１",
        "²",
        "tenant1",
        str(2**63),
        str(-(2**63) - 1),
        "9" * 40,
    ],
    ids=repr,
)
def test_parse_long_rejects_what_java_rejects(text: str) -> None:
    assert parse_long(text) is None
