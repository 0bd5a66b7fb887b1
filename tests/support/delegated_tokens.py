"""Tokens Aura mints for DWP calls on a user's behalf, read back; and a search of Redis for any token."""

from __future__ import annotations

import re
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError
from redis.asyncio import Redis

from tests.support.auth import SECRET

# Three base64url parts: what a compact JWS looks like, wherever it is embedded (JSON, "Bearer ...").
JWT_SHAPED = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def delegated_claims(authorization: str, *, secret: str = SECRET) -> dict[str, Any]:
    """The claims of ``Bearer <token>`` after checking its signature with the suite's secret."""
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    return claims


def verifies(text: str, *, secret: str = SECRET) -> bool:
    """Whether ``text`` is a token signed with ``secret``, expired or not: one an attacker could replay."""
    try:
        jwt.decode(text, secret, algorithms=["HS256"],
                   options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False})
    except JOSEError:
        return False
    return True


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def every_string(redis: Redis) -> dict[str, list[str]]:
    """Every key of ``redis`` (KEYS *) and every string it holds: hash fields and values, stream entries,
    list items, set members, plain values."""
    found: dict[str, list[str]] = {}
    for raw_key in await redis.keys("*"):
        key = _text(raw_key)
        kind = _text(await redis.type(key))
        values: list[object] = [key]
        if kind == "hash":
            for name, value in (await redis.hgetall(key)).items():
                values += [name, value]
        elif kind == "stream":
            for _, entry in await redis.xrange(key) or []:
                for name, value in (entry or {}).items():
                    values += [name, value]
        elif kind == "list":
            values += await redis.lrange(key, 0, -1)
        elif kind == "set":
            values += list(await redis.smembers(key))
        elif kind == "string":
            values.append(await redis.get(key) or "")
        found[key] = [_text(value) for value in values]
    return found


async def tokens_in(redis: Redis, *, secret: str = SECRET) -> list[tuple[str, str]]:
    """(key, token) for every string in Redis, or JWT-shaped part of one, that verifies as a token."""
    return [(key, candidate)
            for key, values in (await every_string(redis)).items()
            for value in values
            for candidate in {value, *JWT_SHAPED.findall(value)}
            if verifies(candidate, secret=secret)]
