"""Tokens and headers as the DWP side sends them (CONTRACT §2.1-2.4): one builder of each for the suite."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from jose import jwt

# The suite's own secret, the one every test server is started with: Aura refuses the public dev secret
# (CONTRACT §2.1) unless AURA_ALLOW_DEV_SECRET is set.
SECRET = "the-suite-s-own-hs256-secret-not-the-dwp-dev-one-0123456789abcd"
OTHER_SECRET = "another_secret_that_is_also_at_least_32_bytes_long!!"

Digest = Callable[[], Any]  # hashlib.sha256 and friends, as hmac.new takes them


def make_token(
    sub: str | int = "1", tenant: Any = "1", *, lifetime: int = 3600, secret: str = SECRET, **extra: Any
) -> str:
    """A python-jose HS256 token (header with ``typ``); ``tenant=None`` leaves the tenant claim out."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "tenant_id": tenant, "iat": now, "exp": now + lifetime, **extra}
    if tenant is None:
        del claims["tenant_id"]
    return str(jwt.encode(claims, secret, algorithm="HS256"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def now_claims(**overrides: Any) -> dict[str, Any]:
    """auth-server's claims (CONTRACT §2.2), valid for an hour; an override of ``...`` drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "1", "tenant_id": "1", "iat": now, "exp": now + 3600, **overrides}
    return {k: v for k, v in claims.items() if v is not ...}


def hand_token(
    claims: Any,
    header: Any = None,
    *,
    secret: str = SECRET,
    digest: Digest = hashlib.sha256,
    raw_claims: bytes | None = None,
) -> str:
    """A JWS built byte by byte, as jjwt emits it (compact JSON, no ``typ`` unless given), so the
    header and the claims can be anything; ``raw_claims`` replaces the claims' JSON bytes."""
    head = {"alg": "HS256"} if header is None else header
    body = raw_claims if raw_claims is not None else compact(claims)
    signing_input = f"{b64url(compact(head))}.{b64url(body)}"
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(alg: str) -> str:
    """``alg: none`` style: a header and claims with an empty signature."""
    return f"{b64url(compact({'alg': alg, 'typ': 'JWT'}))}.{b64url(compact(now_claims()))}."


def some_headers(token: str | None, tenant: str | None, user: str | None) -> dict[str, str]:
    """Authorization, X-Tenant-ID and X-User-ID as the lower-case names a server sees; None leaves one out."""
    sent: dict[str, str] = {}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    if tenant is not None:
        sent["x-tenant-id"] = tenant
    if user is not None:
        sent["x-user-id"] = user
    return sent


def bearer(token: str, tenant: str = "1", **extra: str) -> dict[str, str]:
    """The stream's headers for ``token``: Authorization and X-Tenant-ID, plus ``extra``."""
    return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant, **extra}


def auth_headers(sub: str = "1", tenant: str = "1", **extra: str) -> dict[str, str]:
    """A valid caller of the stream: a fresh token for ``sub``/``tenant`` and the matching X-Tenant-ID."""
    return bearer(make_token(sub, tenant), tenant, **extra)


def approver_headers(sub: str = "1", tenant: str = "1", **extra: str) -> dict[str, str]:
    """What main-service's interceptor demands on approve/reject (CONTRACT §2.3-2.4): X-User-ID too."""
    return auth_headers(sub, tenant, **{"X-User-ID": sub, **extra})
