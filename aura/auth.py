"""HS256 JWT verification and tenant/user checks (CONTRACT §2).

python-jose is wrapped here and nowhere else, so a swap stays one file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError

from aura.ids import parse_long
from aura.errors import BadRequest, Forbidden, TenantMissing, TokenExpired, TokenInvalid, Unauthorized

ALGORITHM = "HS256"
# Longest token verify() parses. auth-server's tokens are ~200 bytes; the bound keeps an attacker's
# header from making python-jose base64-decode and JSON-parse megabytes (8 KiB is a common header limit).
MAX_TOKEN_LENGTH = 8 * 1024
_TIME_CLAIMS = ("exp", "iat", "nbf")  # NumericDate claims (RFC 7519 §2, §4.1.4-4.1.6)
_VERIFIED_CACHE_SIZE = 4096
TENANT_HEADER = "x-tenant-id"
USER_HEADER = "x-user-id"
AGENT_HEADER = "x-agent-id"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the JWT ``sub`` and the tenant, both as strings."""

    user_id: str
    tenant_id: str


class TokenVerifier:
    def __init__(self, secret: str, *, leeway_seconds: int = 10) -> None:
        self._secret = secret  # python-jose uses a str key's UTF-8 bytes, like the Java side
        self._leeway = leeway_seconds
        # A browser sends the same token with every request; verifying it costs ~50 µs each time.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid(f"Invalid token: longer than {MAX_TOKEN_LENGTH} characters")
        try:
            # algorithms must be a list: a string is a substring test in python-jose.
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require_exp": True, "leeway": self._leeway, "verify_aud": False},
            )
        except ExpiredSignatureError as exc:
            # python-jose int()s exp before comparing, so exp "1" or true lands here; the signature is
            # already checked. An ill-typed time claim is an invalid token, not an expired one.
            _require_numeric_dates(jwt.get_unverified_claims(token))
            raise TokenExpired("Token expired") from exc
        except JOSEError as exc:  # JWTError, JWKError, ...: never a 500
            raise TokenInvalid(f"Invalid token: {exc}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            # python-jose compares ill-typed claims (exp: null, iat: []) without checking their type.
            raise TokenInvalid("Invalid token: a time claim is not a number") from exc
        except Exception as exc:
            # Whatever else a malformed token makes python-jose raise, e.g. RecursionError for a header
            # of nested brackets: never a 500, and ``from None`` so no foreign traceback rides along.
            raise TokenInvalid(f"Invalid token: malformed ({type(exc).__name__})") from None
        # python-jose accepts any int()-able exp/iat/nbf: "99999999999999999999" would never expire.
        _require_numeric_dates(claims)
        return claims

    def principal(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and time.time() <= known[1] + self._leeway:
            return known[0]
        claims = self.verify(token)
        principal = Principal(user_id=_claim_text(claims, "sub"), tenant_id=_tenant_claim(claims))
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    def issue(self, *, sub: str, tenant_id: str, lifetime_seconds: int, now: int) -> str:
        """Mint a token shaped like dwp-auth-server's (CONTRACT §2.2): for dev and tests."""
        claims = {"sub": sub, "tenant_id": tenant_id, "iat": now, "exp": now + lifetime_seconds}
        token: str = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return token


def _require_numeric_dates(claims: Mapping[str, Any]) -> None:
    """exp, iat and nbf, when present, must be JSON numbers (not bool), finite as a float."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise TokenInvalid(f"Invalid token: claim '{name}' is not a NumericDate number")


def _is_numeric_date(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)  # NaN and Infinity parse from python-jose's JSON
    except OverflowError:  # an int beyond float's range, e.g. 1 followed by 400 zeros
        return False


def _claim_text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise TokenInvalid(f"Invalid token: claim '{name}' is missing or not a string")
    return str(value)


def _tenant_claim(claims: Mapping[str, Any]) -> str:
    # auth-server writes a digit string; numbers are normalised with str() (CONTRACT §2.2).
    name = "tenant_id" if "tenant_id" in claims else "tenantId"
    return _claim_text(claims, name)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <jwt>``; None when the header is absent."""
    value = headers.get("authorization")
    if value is None or value.strip() == "":
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def tenant_header(headers: Mapping[str, str]) -> str:
    tenant = (headers.get(TENANT_HEADER) or "").strip()
    if not tenant:
        raise TenantMissing("X-Tenant-ID header is required")
    return tenant


def check_principal(principal: Principal, headers: Mapping[str, str], tenant: str) -> None:
    """X-Tenant-ID must equal the claim (string compare); X-User-ID, when sent, must equal ``sub``."""
    if principal.tenant_id != tenant:
        raise Forbidden("Tenant ID mismatch")
    user = headers.get(USER_HEADER)
    if user is not None and user.strip() != principal.user_id:
        raise Forbidden("User ID mismatch")


def authenticate_approver(verifier: TokenVerifier, headers: Mapping[str, str]) -> tuple[Principal, int]:
    """main-service's HitlSecurityInterceptor, then its Long binding of X-Tenant-ID (CONTRACT §2.4)."""
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("Authorization header is required")
    principal = verifier.principal(token)
    tenant = (headers.get(TENANT_HEADER) or "").strip()
    if not tenant:
        raise Unauthorized("X-Tenant-ID header is required")
    if principal.tenant_id != tenant:
        raise Forbidden("Tenant ID mismatch")
    user = (headers.get(USER_HEADER) or "").strip()
    if not user:
        raise Unauthorized("X-User-ID header is required")
    if user != principal.user_id:
        raise Forbidden("User ID mismatch")
    tenant_number = parse_long(tenant)
    if tenant_number is None:
        raise BadRequest("X-Tenant-ID must be a number")
    return principal, tenant_number



@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller of the stream and session API, and the token it came with."""

    principal: Principal
    token: str

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"


class Authenticator:
    """The stream's and session API's check: X-Tenant-ID, then the token, then tenant/user (CONTRACT §2.4)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def caller(self, headers: Mapping[str, str], *, allow_missing: bool = False) -> Caller | None:
        """The caller; None only when ``allow_missing`` and no token was sent (CONTRACT §2.5 compat)."""
        tenant = tenant_header(headers)
        token = bearer_token(headers)
        if token is None:
            if allow_missing:
                return None
            raise Unauthorized("Authorization header is required")
        principal = self._verifier.principal(token)
        check_principal(principal, headers, tenant)
        return Caller(principal, token)

    def approver(self, headers: Mapping[str, str]) -> tuple[Principal, int]:
        return authenticate_approver(self._verifier, headers)
