"""HS256 JWT verification, tenant/user checks (CONTRACT §2), and the tokens Aura mints as a user.

python-jose is wrapped here and nowhere else, so a swap stays one file.

Aura never keeps the caller's token. It keeps a :class:`Delegation`: the verified
token's claims without the ones that make it one particular token (``exp``, ``iat``,
``nbf``, ``jti``), and its ``exp``. That is not a credential: only the HS256
secret turns it into one. Each call to DWP on the user's behalf gets a fresh token
minted from it (:meth:`TokenVerifier.delegate`), marked ``azp: aura`` and never
outliving the user's own.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError

from aura.ids import parse_long
from aura.errors import BadRequest, Forbidden, TenantMissing, TokenExpired, TokenInvalid, Unauthorized

ALGORITHM = "HS256"
# Longest token verify() parses. auth-server's tokens are ~200 bytes; the bound keeps an attacker's
# header from making python-jose base64-decode and JSON-parse megabytes (8 KiB is a common header limit).
MAX_TOKEN_LENGTH = 8 * 1024
_TIME_CLAIMS = ("exp", "iat", "nbf")  # NumericDate claims (RFC 7519 §2, §4.1.4-4.1.6)
# What makes a token one particular token: a delegation keeps everything else (sub, tenant_id, iss, aud, ...).
_TOKEN_INSTANCE_CLAIMS: Final = frozenset({*_TIME_CLAIMS, "jti"})
DELEGATED_PARTY: Final = "aura"  # the azp of every token Aura mints (RFC 7519 leaves azp to OpenID Connect)
_VERIFIED_CACHE_SIZE = 4096
TENANT_HEADER = "x-tenant-id"
USER_HEADER = "x-user-id"
AGENT_HEADER = "x-agent-id"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the JWT ``sub`` and the tenant, both as strings."""

    user_id: str
    tenant_id: str


@dataclass(frozen=True, slots=True)
class Delegation:
    """What Aura may do as a user: a verified token's claims minus exp/iat/nbf/jti, and that token's exp.

    Stored in the session's snapshot instead of the token: without the secret it authenticates nobody.
    """

    claims: dict[str, Any]
    expires_at: int  # the user's token's exp, in whole seconds rounded down: no minted token outlives it

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> Delegation:
        kept = {name: value for name, value in claims.items() if name not in _TOKEN_INSTANCE_CLAIMS}
        return cls(kept, math.floor(claims["exp"]))

    def encode(self) -> str:
        return json.dumps({"claims": self.claims, "exp": self.expires_at}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Delegation:
        """The delegation ``encode`` wrote; ValueError for anything else."""
        body = json.loads(text)
        claims, exp = (body.get("claims"), body.get("exp")) if isinstance(body, dict) else (None, None)
        if not isinstance(claims, dict) or isinstance(exp, bool) or not isinstance(exp, int):
            raise ValueError("a delegation is {\"claims\": {...}, \"exp\": <int>}")
        return cls(claims, exp)


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A bearer token that a version before delegations stored in the snapshot (its ``authorization``).

    Used for a DWP call only if it still verifies, and then only to mint a delegated token from.
    """

    token: str

    def __repr__(self) -> str:  # never in a log line or a traceback
        return "StoredToken(<redacted>)"


Grant = Delegation | StoredToken  # what a session may act on as its user


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    delegation: Delegation


class TokenVerifier:
    def __init__(
        self, secret: str, *, leeway_seconds: int = 10, issuer: str | None = None, audience: str | None = None
    ) -> None:
        self._secret = secret  # python-jose uses a str key's UTF-8 bytes, like the Java side
        self._leeway = leeway_seconds
        # Off by default: dwp-auth-server's tokens carry neither iss nor aud (CONTRACT §2.2).
        self._issuer = issuer
        self._audience = audience
        # A browser sends the same token with every request; verifying it costs ~50 µs each time.
        self._verified: dict[str, tuple[VerifiedToken, float]] = {}

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
        self._require_issuer_and_audience(claims)
        return claims

    def _require_issuer_and_audience(self, claims: Mapping[str, Any]) -> None:
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise TokenInvalid("Invalid token: claim 'iss' is not the expected issuer")
        if self._audience is not None:
            audience = claims.get("aud")
            # RFC 7519 §4.1.3: one string, or an array of strings that must contain ours.
            names = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
            if self._audience not in [name for name in names if isinstance(name, str)]:
                raise TokenInvalid("Invalid token: claim 'aud' does not contain the expected audience")

    def check(self, token: str) -> VerifiedToken:
        """Who the token names and what Aura may do as them; the errors of :meth:`verify`."""
        known = self._verified.get(token)
        if known is not None and time.time() <= known[1] + self._leeway:
            return known[0]
        claims = self.verify(token)
        principal = Principal(user_id=_claim_text(claims, "sub"), tenant_id=_tenant_claim(claims))
        verified = VerifiedToken(principal, Delegation.of(claims))
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (verified, float(claims["exp"]))
        return verified

    def principal(self, token: str) -> Principal:
        return self.check(token).principal

    def delegate(
        self, grant: Grant, *, lifetime_seconds: int, now: float | None = None, owner: Principal | None = None
    ) -> str:
        """A fresh token for one call as the user: the delegated claims, ``azp: aura``, ``iat`` now, and
        ``exp`` ``lifetime_seconds`` from now but never after the user's own token's.

        TokenExpired once the user's token has expired: DWP would answer 401 to it (CONTRACT §2.4), so
        no token is made. A :class:`StoredToken` must verify first (TokenExpired, TokenInvalid). With
        ``owner`` (the session's), TokenInvalid unless the claims name that user of that tenant: a
        snapshot edited in Redis must not mint tokens for somebody else.
        """
        delegation = self.check(grant.token).delegation if isinstance(grant, StoredToken) else grant
        if owner is not None:
            named = Principal(user_id=_claim_text(delegation.claims, "sub"), tenant_id=_tenant_claim(delegation.claims))
            if named != owner:
                raise TokenInvalid("Invalid token: the delegation names another user than the session's owner")
        issued = math.floor(time.time() if now is None else now)
        if delegation.expires_at <= issued:
            raise TokenExpired("Token expired")
        claims = {
            **delegation.claims,
            "azp": DELEGATED_PARTY,
            "iat": issued,
            "exp": min(issued + lifetime_seconds, delegation.expires_at),
        }
        token: str = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return token

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



class Delegator:
    """Mints the token of each DWP call made on a user's behalf (``AURA_DELEGATED_TOKEN_SECONDS``)."""

    def __init__(self, verifier: TokenVerifier, *, lifetime_seconds: int) -> None:
        self._verifier = verifier
        self._lifetime = lifetime_seconds

    def authorization(self, grant: Grant, owner: Principal) -> str:
        """``Bearer <a token minted now>`` as ``owner``, the session's; TokenExpired / TokenInvalid when
        none may be made (the claims name somebody else, or the user's token expired)."""
        return f"Bearer {self._verifier.delegate(grant, lifetime_seconds=self._lifetime, owner=owner)}"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller of the stream and session API, and what a session of theirs may keep.

    Not the token: a session keeps ``delegation`` (DECISIONS #24), so nothing downstream can store it.
    """

    principal: Principal
    delegation: Delegation


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
        verified = self._verifier.check(token)
        check_principal(verified.principal, headers, tenant)
        return Caller(verified.principal, verified.delegation)

    def approver(self, headers: Mapping[str, str]) -> tuple[Principal, int]:
        return authenticate_approver(self._verifier, headers)
