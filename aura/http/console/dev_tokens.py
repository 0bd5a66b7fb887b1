"""``POST /aura/console/dev-token``: a token for the console, only while Aura runs on the public dev secret.

The route exists only when ``JWT_SECRET`` is the DWP dev secret (CONTRACT §2.1) and
``AURA_ALLOW_DEV_SECRET=true``, i.e. ``make run``. That secret is published, so anyone who can reach
Aura can already sign any token with it; the route gives nothing more, and saves pasting one from
``make token``. Under any other secret there is no route at all: a 404 (docs/SECURITY.md, DECISIONS #69).
"""

from __future__ import annotations

import re
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import TokenVerifier
from aura.config import DEV_JWT_SECRET, Settings
from aura.errors import ValidationFailed
from aura.http.body import parse_json_object, read_body
from aura.http.envelope import success_response

DEV_TOKEN_SECONDS: Final = 3600  # as `make token`
_BODY_LIMIT: Final = 4096
_ID: Final = re.compile(r"[0-9]{1,18}")  # DWP's user and tenant ids are Longs (main-service binds X-Tenant-ID as one)


def dev_tokens_allowed(settings: Settings) -> bool:
    """Whether Aura runs on the public dev secret, which the configuration allows only with AURA_ALLOW_DEV_SECRET."""
    return settings.allow_dev_secret and settings.jwt_secret == DEV_JWT_SECRET


class DevTokens:
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def mint(self, request: Request) -> Response:
        """A token shaped like auth-server's for ``{"userId", "tenantId"}`` (both optional, default "1")."""
        raw = await read_body(request, _BODY_LIMIT)
        body = parse_json_object(raw) if raw.strip() else {}
        user_id, tenant_id = _id(body, "userId"), _id(body, "tenantId")
        now = int(time.time())
        token = self._verifier.issue(sub=user_id, tenant_id=tenant_id, lifetime_seconds=DEV_TOKEN_SECONDS, now=now)
        data = {"token": token, "userId": user_id, "tenantId": tenant_id, "expiresAt": now + DEV_TOKEN_SECONDS}
        response = success_response(data, message="Dev token minted (public dev secret)")
        response.headers["Cache-Control"] = "no-store"
        return response


def _id(body: dict[str, object], name: str) -> str:
    value = body.get(name, "1")
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValidationFailed(f"{name} must be a string of 1 to 18 digits")
    return value
