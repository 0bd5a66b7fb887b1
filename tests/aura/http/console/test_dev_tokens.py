"""``POST /aura/console/dev-token``: only on the public dev secret, i.e. under ``make run`` (DECISIONS #69)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from jose import jwt

from aura.config import DEV_JWT_SECRET, Settings
from aura.http.console.dev_tokens import DEV_TOKEN_SECONDS, dev_tokens_allowed
from tests.support.auth import SECRET
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.anyio


def test_allowed_only_on_the_dev_secret_with_its_switch() -> None:
    assert dev_tokens_allowed(Settings(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True))
    assert not dev_tokens_allowed(Settings(jwt_secret=SECRET, allow_dev_secret=True))
    assert not dev_tokens_allowed(Settings(jwt_secret=SECRET))


@pytest.fixture
def dev_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True)


async def test_mints_a_token_shaped_like_auth_servers_that_aura_accepts(dev_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url, timeout=10) as client:
        response = await client.post("/aura/console/dev-token")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        data = response.json()["data"]
        claims = jwt.decode(data["token"], DEV_JWT_SECRET, algorithms=["HS256"])
        assert (claims["sub"], claims["tenant_id"]) == ("1", "1") == (data["userId"], data["tenantId"])
        assert claims["exp"] - claims["iat"] == DEV_TOKEN_SECONDS == data["expiresAt"] - claims["iat"]
        listed = await client.get("/aura/sessions", headers={"Authorization": f"Bearer {data['token']}",
                                                             "X-Tenant-ID": "1"})
        assert listed.status_code == 200, listed.text


async def test_mints_for_the_user_and_tenant_asked_for(dev_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url, timeout=10) as client:
        response = await client.post("/aura/console/dev-token", json={"userId": "42", "tenantId": "7"})
        claims = jwt.decode(response.json()["data"]["token"], DEV_JWT_SECRET, algorithms=["HS256"])
        assert (claims["sub"], claims["tenant_id"]) == ("42", "7")


@pytest.mark.parametrize("body", [{"userId": ""}, {"userId": 1}, {"tenantId": "1; drop"}, {"tenantId": "9" * 19}])
async def test_ids_must_be_digit_strings(dev_server: LiveServer, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url, timeout=10) as client:
        response = await client.post("/aura/console/dev-token", json=body)
        assert response.status_code == 400 and response.json()["errorCode"] == "E4000"


async def test_under_any_other_secret_there_is_no_such_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/aura/console/dev-token")
    assert response.status_code == 404
    assert response.json()["message"] == "No route for POST /aura/console/dev-token"
