"""Built-in tools do real work against Redis and fail honestly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from aura.errors import ToolError
from aura.agent.tools import ListOpenTasks, SendEmail, ToolContext, builtin_tools

pytestmark = pytest.mark.anyio


def ctx(redis: Redis, tenant: str) -> ToolContext:
    return ToolContext(tenant_id=tenant, user_id="1", session_id="sess_x", redis=redis)


async def test_send_email_puts_the_message_in_the_tenant_outbox(redis: Redis) -> None:
    await redis.delete("aura:outbox:t-mail")
    result = await SendEmail().run({"to": "kim@example.com", "subject": "s", "body": "배포 준비 완료"}, ctx(redis, "t-mail"))
    raw = await redis.lindex("aura:outbox:t-mail", 0)
    assert raw is not None
    stored = json.loads(raw)
    assert stored["to"] == ["kim@example.com"] and stored["body"] == "배포 준비 완료"
    assert stored["messageId"] in result and "kim@example.com" in result


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"body": "x"}, "send_email needs a recipient in 'to'"),
        ({"to": "kim@", "body": "x"}, "invalid email address: kim@"),
        ({"to": "a@b.io, nope", "body": "x"}, "invalid email address: nope"),
        ({"to": "a@b.io", "body": " "}, "send_email needs a non-empty 'body'"),
    ],
)
async def test_send_email_rejects_bad_params_without_sending(redis: Redis, params: dict[str, Any], error: str) -> None:
    await redis.delete("aura:outbox:t-bad")
    with pytest.raises(ToolError) as caught:
        await SendEmail().run(params, ctx(redis, "t-bad"))
    assert str(caught.value) == error
    assert await redis.llen("aura:outbox:t-bad") == 0


async def test_list_open_tasks_filters_closed_future_and_unreadable(redis: Redis) -> None:
    key = "aura:tasks:t-list"
    await redis.delete(key)
    await redis.hset(key, mapping={
        "a": '{"title":"Due today","status":"open"}',
        "b": '{"title":"Closed","status":"Done"}',
        "c": "{broken",
        "d": '{"title":"Later","due":"2999-12-31"}',
        "e": '{"title":"Late","due":"2001-01-01"}',
    })
    assert await ListOpenTasks().run({}, ctx(redis, "t-list")) == "2 open tasks: Due today; Late (overdue)"
    await redis.delete(key)
    assert await ListOpenTasks().run({}, ctx(redis, "t-list")) == "no open tasks for today"


def test_builtin_registry_marks_only_send_email_as_needing_approval() -> None:
    registry = builtin_tools()
    assert registry.names() == ["list_open_tasks", "send_email"]
    tools = [registry.get(n) for n in registry.names()]
    assert [t.requires_approval if t is not None else None for t in tools] == [False, True]
    assert registry.get("nope") is None
