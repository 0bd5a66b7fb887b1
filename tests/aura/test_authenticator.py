"""The stream's and the approve/reject endpoints' checks, in their order and with their messages
(CONTRACT §2.4-2.6): each failure is one ApiError whose message the client sees in the envelope.

Headers are given as ASGI hands them to Starlette: lower-case names. Written against the
survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from aura.auth import Authenticator, Caller, Principal, TokenVerifier, authenticate_approver, bearer_token, tenant_header
from aura.errors import ApiError, BadRequest, Forbidden, TenantMissing, TokenInvalid, Unauthorized
from tests.support.auth import make_token, some_headers

SECRET = "a_test_secret_that_is_at_least_256_bits_long_for_HS256_signing"


def token_for(sub: str = "7", tenant: str = "3") -> str:
    return make_token(sub, tenant, secret=SECRET)


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(TokenVerifier(SECRET))


def headers(token: str | None = None, tenant: str | None = "3", user: str | None = None) -> dict[str, str]:
    return some_headers(token, tenant, user)


def fails(error: type[ApiError], message: str, call: Callable[[], object]) -> None:
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error
    assert caught.value.message == message


# -- Authenticator.caller (the stream and the session API) ------------------------------------------
def test_a_caller_is_the_tokens_principal_and_does_not_carry_the_token(authenticator: Authenticator) -> None:
    token = token_for()
    caller = authenticator.caller(headers(token))
    assert caller is not None
    assert caller == Caller(Principal(user_id="7", tenant_id="3"), caller.delegation)
    assert token not in repr(caller)


def test_a_caller_brings_the_claims_a_session_may_delegate_but_not_its_token(authenticator: Authenticator) -> None:
    """Issue 10 item 8: what a session keeps is the claims minus exp/iat/nbf/jti, and the token's exp."""
    now = int(time.time())
    token = make_token("7", "3", secret=SECRET, email="kim@example.com", jti="j-1", nbf=now - 5, iss="dwp-auth")
    caller = authenticator.caller(headers(token))
    assert caller is not None
    assert caller.delegation.claims == {"sub": "7", "tenant_id": "3", "email": "kim@example.com", "iss": "dwp-auth"}
    assert now + 3599 <= caller.delegation.expires_at <= now + 3601
    assert token not in caller.delegation.encode()


def test_a_caller_may_send_its_user_id_when_it_matches(authenticator: Authenticator) -> None:
    caller = authenticator.caller(headers(token_for(), user="7"))
    assert caller is not None and caller.principal.user_id == "7"


def test_the_tenant_header_is_checked_before_the_token(authenticator: Authenticator) -> None:
    fails(TenantMissing, "X-Tenant-ID header is required", lambda: authenticator.caller({}))
    fails(TenantMissing, "X-Tenant-ID header is required", lambda: authenticator.caller(headers("garbage", tenant="  ")))


def test_no_token_is_unauthorized_unless_allowed(authenticator: Authenticator) -> None:
    fails(Unauthorized, "Authorization header is required", lambda: authenticator.caller(headers()))
    assert authenticator.caller(headers(), allow_missing=True) is None


def test_a_bad_token_is_refused_even_when_a_missing_one_is_allowed(authenticator: Authenticator) -> None:
    with pytest.raises(TokenInvalid):
        authenticator.caller(headers("not-a-jwt"), allow_missing=True)


def test_a_caller_of_another_tenant_or_user_is_forbidden(authenticator: Authenticator) -> None:
    fails(Forbidden, "Tenant ID mismatch", lambda: authenticator.caller(headers(token_for(tenant="4"))))
    fails(Forbidden, "User ID mismatch", lambda: authenticator.caller(headers(token_for(), user="8")))


# -- bearer_token / tenant_header --------------------------------------------------------------------
def test_bearer_token_reads_the_lower_case_authorization_header() -> None:
    assert bearer_token({"authorization": "Bearer abc.def.ghi"}) == "abc.def.ghi"
    assert bearer_token({"authorization": "  bearer   abc.def.ghi  "}) == "abc.def.ghi"
    assert bearer_token({}) is None
    assert bearer_token({"authorization": "   "}) is None


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "abc.def.ghi"])
def test_an_authorization_header_that_is_not_bearer_says_what_it_must_be(value: str) -> None:
    fails(Unauthorized, "Authorization header must be 'Bearer <token>'", lambda: bearer_token({"authorization": value}))


def test_tenant_header_is_trimmed() -> None:
    assert tenant_header({"x-tenant-id": " 3 "}) == "3"


# -- authenticate_approver / Authenticator.approver (main-service's HITL endpoints) -----------------
def test_an_approver_is_the_principal_and_the_tenant_as_a_number(authenticator: Authenticator) -> None:
    assert authenticator.approver(headers(token_for(), user="7")) == (Principal("7", "3"), 3)
    assert authenticator.approver(headers(token_for(), tenant=" 3 ", user=" 7 ")) == (Principal("7", "3"), 3)


@pytest.mark.parametrize(
    "sent, error, message",
    [
        (headers(tenant=None), Unauthorized, "Authorization header is required"),  # the token first, here
        (headers(token_for(), tenant=None, user="7"), Unauthorized, "X-Tenant-ID header is required"),
        (headers(token_for(), tenant=" ", user="7"), Unauthorized, "X-Tenant-ID header is required"),
        (headers(token_for(), tenant="4", user="7"), Forbidden, "Tenant ID mismatch"),
        (headers(token_for()), Unauthorized, "X-User-ID header is required"),
        (headers(token_for(), user="  "), Unauthorized, "X-User-ID header is required"),
        (headers(token_for(), user="8"), Forbidden, "User ID mismatch"),
        (headers(token_for(tenant="t1"), tenant="t1", user="7"), BadRequest, "X-Tenant-ID must be a number"),
    ],
)
def test_an_approver_is_refused_in_main_services_order(
    authenticator: Authenticator, sent: dict[str, str], error: type[ApiError], message: str
) -> None:
    fails(error, message, lambda: authenticator.approver(sent))
    fails(error, message, lambda: authenticate_approver(TokenVerifier(SECRET), sent))
