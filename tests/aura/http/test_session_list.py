"""``GET /aura/sessions``: the caller's tenant's live sessions, over a real uvicorn and redis-server."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from tests.support.auth import approver_headers, auth_headers, bearer, make_token
from tests.support.live_server import LiveServer
from tests.support.streams import EMAIL, start_waiting_session
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def fresh_tenant() -> str:
    """A numeric tenant (approvals bind X-Tenant-ID as a Long) that no other test's sessions use."""
    return str(random.randint(10**8, 10**12))


async def listed(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/aura/sessions", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "SUCCESS" and body["message"] == "Live sessions retrieved"
    data: dict[str, Any] = body["data"]
    return data


async def test_every_user_of_the_tenant_sees_its_waiting_sessions_and_only_their_own_prompts(
    aura: LiveServer, client: httpx.AsyncClient
) -> None:
    tenant = fresh_tenant()
    mine, my_request, _ = await start_waiting_session(aura.url, auth_headers("1", tenant))
    theirs, their_request, _ = await start_waiting_session(aura.url, auth_headers("2", tenant))

    data = await listed(client, auth_headers("1", tenant))

    assert data["total"] == 2 and data["limit"] == 50
    by_id = {session["sessionId"]: session for session in data["sessions"]}
    assert set(by_id) == {mine, theirs}
    assert by_id[mine] == {
        "sessionId": mine, "userId": "1", "state": "awaiting_approval", "createdAt": by_id[mine]["createdAt"],
        "updatedAt": by_id[mine]["updatedAt"], "pendingRequestId": my_request, "own": True, "prompt": EMAIL,
    }
    assert by_id[theirs]["own"] is False and "prompt" not in by_id[theirs]
    # Nor its request id: with it anyone of the tenant could read the pending action's params.
    assert their_request and by_id[theirs]["pendingRequestId"] is None and by_id[theirs]["userId"] == "2"
    # newest first
    assert [session["sessionId"] for session in data["sessions"]] == [theirs, mine]


async def test_another_tenant_sees_none_of_them(aura: LiveServer, client: httpx.AsyncClient) -> None:
    tenant = fresh_tenant()
    await start_waiting_session(aura.url, auth_headers("1", tenant))
    data = await listed(client, auth_headers("1", fresh_tenant()))
    assert data == {"sessions": [], "total": 0, "limit": 50}


async def test_a_decided_session_leaves_the_list(aura: LiveServer, client: httpx.AsyncClient) -> None:
    tenant = fresh_tenant()
    session_id, request_id, _ = await start_waiting_session(aura.url, auth_headers("1", tenant))
    assert [s["sessionId"] for s in (await listed(client, auth_headers("1", tenant)))["sessions"]] == [session_id]

    approved = await client.post(f"/aura/hitl/approve/{request_id}", headers=approver_headers("1", tenant),
                                 json={"userId": "1"})
    assert approved.status_code == 200, approved.text

    async def gone() -> bool:
        return int((await listed(client, auth_headers("1", tenant)))["total"]) == 0

    await wait_until(gone, timeout=15, message="the approved session still listed")


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"X-Tenant-ID": "1"}, 401, "E2000"),  # no token
    (bearer(make_token("1", "1")) | {"X-Tenant-ID": ""}, 400, "E2006"),  # no tenant (DECISIONS #1)
    (bearer(make_token("1", "1"), "2"), 403, "E2001"),  # another tenant's header
    (bearer(make_token("1", "1"), "1", **{"X-User-ID": "2"}), 403, "E2001"),  # another user's header
    (bearer("not-a-token"), 401, "E2003"),  # invalid token
])
async def test_only_an_authenticated_caller_of_the_tenant_gets_the_list(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, code: str
) -> None:
    response = await client.get("/aura/sessions", headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["errorCode"] == code
