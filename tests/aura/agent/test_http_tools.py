"""Tools declared in JSON: validation at start-up, templates, and the HTTP call (respx)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from aura.errors import ConfigError, ToolError
from aura.agent.http_tools import load_tools
from aura.agent.tools import Tool, ToolContext, builtin_tools, validate_params

pytestmark = pytest.mark.anyio

GOOD = {
    "name": "find_user",
    "description": "Find a user.",
    "requires_approval": False,
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "limit": {"type": "integer", "default": 5}},
                   "required": ["q"]},
    "http": {"method": "post", "url": "{gateway}/api/main/users/{q}?limit={limit}",
             "body": {"query": "{q}", "limit": "{limit}", "note": "by {user_id}"}},
}


def write(tmp_path: Path, document: str | dict[str, Any]) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_shipped_tools_load_and_extend_the_builtins() -> None:
    names = builtin_tools().with_tools(load_tools()).names()
    assert names == ["get_agent_task", "list_agent_tasks", "list_open_tasks", "send_email"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "is not valid JSON"),
        ({"tool": []}, "must be a JSON object with a 'tools' list"),
        ({"tools": [dict(GOOD, name="bad name")]}, "tools[0]: 'name' must be 1-64 letters, digits, '_' or '-'"),
        ({"tools": [dict(GOOD, description="")]}, "tool 'find_user': 'description' must be a non-empty string"),
        ({"tools": [dict(GOOD, requires_approval="yes")]}, "'requires_approval' must be true or false"),
        ({"tools": [dict(GOOD, parameters={"type": "array"})]}, "'parameters' must be a JSON schema with \"type\": \"object\""),
        ({"tools": [dict(GOOD, parameters={"type": "object", "properties": 3})]}, "'parameters' is not a valid JSON schema"),
        ({"tools": [dict(GOOD, http={"method": "BREW", "url": "{gateway}/x"})]}, "http.method must be one of DELETE, GET, PATCH, POST, PUT"),
        ({"tools": [dict(GOOD, http={"method": "GET", "url": "/x"})]}, "http.url must start with {gateway}/, http:// or https://"),
        ({"tools": [GOOD, GOOD]}, "declares find_user more than once"),
        (
            {"tools": [dict(GOOD, http={"method": "GET", "url": "{gateway}/api/main/../auth/{q}"})]},
            "http.url must not contain '.' or '..' path segments",
        ),
    ],
)
def test_bad_declarations_are_refused_at_start_up(tmp_path: Path, document: str | dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_tools(write(tmp_path, document))
    assert message in str(caught.value)


def test_missing_tools_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_tools(tmp_path / "nope.json")


def test_params_are_validated_against_the_schema() -> None:
    tool = load_tools_from(GOOD)
    assert validate_params(tool, {"q": "kim"}) is None
    assert validate_params(tool, {}) == "invalid parameters for find_user: 'q' is a required property"
    assert validate_params(tool, {"q": "kim", "limit": "5"}) == "invalid parameters for find_user: limit: '5' is not of type 'integer'"


def load_tools_from(declaration: dict[str, Any]) -> Tool:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return load_tools(write(Path(tmp), {"tools": [declaration]}))[0]


@respx.mock
async def test_templates_encode_url_values_and_keep_body_types() -> None:
    tool = load_tools_from(GOOD)
    route = respx.post(url__startswith="http://gw.test/api/main/users/").mock(return_value=httpx.Response(201, text="ok"))
    async with httpx.AsyncClient() as http:
        ctx = ToolContext("1", "7", "sess_x", redis=None, credentials=lambda: "Bearer t", http=http, gateway_url="http://gw.test/")  # type: ignore[arg-type]
        assert await tool.run({"q": "kim lee?x=1&y#z"}, ctx) == "ok"
    request = route.calls.last.request
    assert str(request.url) == "http://gw.test/api/main/users/kim%20lee%3Fx%3D1%26y%23z?limit=5"
    assert json.loads(request.content) == {"query": "kim lee?x=1&y#z", "limit": 5, "note": "by 7"}
    assert "x-agent-id" not in request.headers


@respx.mock
async def test_transport_errors_and_http_errors_are_tool_errors() -> None:
    tool = load_tools_from(GOOD)
    route = respx.post(url__startswith="http://gw.test/").mock(side_effect=httpx.ConnectError("refused"))
    async with httpx.AsyncClient() as http:
        ctx = ToolContext("1", "7", "s", redis=None, http=http, gateway_url="http://gw.test")  # type: ignore[arg-type]
        with pytest.raises(ToolError, match="POST http://gw.test/api/main/users/a failed: ConnectError"):
            await tool.run({"q": "a"}, ctx)
        route.mock(return_value=httpx.Response(404, text="no such user"))
        with pytest.raises(ToolError, match="answered HTTP 404: no such user"):
            await tool.run({"q": "a"}, ctx)


@pytest.mark.parametrize(
    ("task_id", "problem"),
    [
        ("..", "taskId must not be '..': it would change the URL path"),
        (".", "taskId must not be '.': it would change the URL path"),
        ("", "taskId must not be empty: it is part of the URL path"),
        ("../../auth/users", "taskId must not contain '/' or '\\': it is one segment of the URL path"),
        ("..\\admin", "taskId must not contain '/' or '\\': it is one segment of the URL path"),
    ],
)
@respx.mock
async def test_a_path_value_that_would_change_the_declared_path_is_refused_before_any_call(
    task_id: str, problem: str
) -> None:
    """Issue 10 item 15: get_agent_task {"taskId": ".."} reached GET /api/main/agent with the user's token."""
    tool = next(t for t in load_tools() if t.name == "get_agent_task")
    route = respx.route().mock(return_value=httpx.Response(200, text="should not be called"))
    async with httpx.AsyncClient() as http:
        ctx = ToolContext("1", "7", "s", redis=None, credentials=lambda: "Bearer t", http=http, gateway_url="http://gw.test")  # type: ignore[arg-type]
        with pytest.raises(ToolError) as caught:
            await tool.run({"taskId": task_id}, ctx)
    assert caught.value.message == f"get_agent_task: {problem}"
    assert not route.called


@respx.mock
async def test_dots_inside_a_path_value_and_any_query_value_are_encoded_not_refused() -> None:
    tool = next(t for t in load_tools() if t.name == "get_agent_task")
    route = respx.get(url__startswith="http://gw.test/").mock(return_value=httpx.Response(200, text="{}"))
    async with httpx.AsyncClient() as http:
        ctx = ToolContext("1", "7", "s", redis=None, http=http, gateway_url="http://gw.test")  # type: ignore[arg-type]
        await tool.run({"taskId": "v1..2"}, ctx)
        await tool.run({"taskId": "%2e%2e"}, ctx)
    urls = [str(call.request.url) for call in route.calls]
    assert urls == ["http://gw.test/api/main/agent/tasks/v1..2", "http://gw.test/api/main/agent/tasks/%252e%252e"]
