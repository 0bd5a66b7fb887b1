"""Tools declared in JSON that call DWP services over HTTP, through the gateway.

A declaration: ``name``, ``description``, ``parameters`` (JSON schema),
``requires_approval`` and ``http``: ``method``, ``url`` and optional ``body``.
Templates use ``{name}``: ``{gateway}``, ``{tenant_id}``, ``{user_id}``,
``{session_id}`` and every parameter. In the URL values are percent-encoded; in
the body a string that is exactly ``{name}`` takes the parameter's JSON value.

A value may never change the path a tool was declared with: in the path it must
be a whole, ordinary segment (not empty, not ``.`` or ``..``, no ``/`` or ``\\``
even encoded, which some proxies decode), so the model cannot steer a call to
another endpoint with the user's token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from aura.errors import ConfigError, ToolError
from aura.agent.tools import Tool, ToolContext
from aura.dwp.headers import outbound_headers

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what Chat Completions accepts as a function name
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_DOT_SEGMENTS: Final = frozenset({".", ".."})
MAX_RESPONSE_CHARS: Final = 4000


@dataclass(frozen=True, slots=True)
class HttpBinding:
    method: str
    url: str
    body: Any = None


@dataclass(slots=True)
class HttpTool:
    name: str
    description: str
    requires_approval: bool
    parameters: dict[str, Any]
    binding: HttpBinding

    async def run(self, params: Mapping[str, Any], ctx: ToolContext) -> str:
        if ctx.http is None:
            raise ToolError(self.name, f"{self.name} needs an HTTP client")
        values = self._values(params, ctx)
        url = self._url(values)
        headers = outbound_headers(
            tenant_id=ctx.tenant_id, user_id=ctx.user_id, authorization=ctx.authorization(self.name), agent_id=ctx.agent_id
        )
        body = None if self.binding.body is None else _fill(self.binding.body, values)
        try:
            response = await ctx.http.request(self.binding.method, url, headers=headers, json=body)
        except httpx.TimeoutException as exc:
            raise ToolError(self.name, f"{self.binding.method} {_route(url)} timed out") from exc
        except httpx.HTTPError as exc:
            raise ToolError(self.name, f"{self.binding.method} {_route(url)} failed: {type(exc).__name__}") from exc
        text = response.text[:MAX_RESPONSE_CHARS]
        if response.status_code >= 400:
            raise ToolError(self.name, f"{self.binding.method} {_route(url)} answered HTTP {response.status_code}: {text}")
        return text

    def _url(self, values: Mapping[str, Any]) -> str:
        """The declared URL with ``values`` filled in; ToolError for a value that would change its path."""
        path, query_mark, query = self.binding.url.partition("?")
        for match in _PLACEHOLDER.finditer(path):
            value = values.get(match.group(1))
            if isinstance(value, _Raw):
                continue
            problem = _path_segment_problem(_text(value))
            if problem is not None:
                raise ToolError(self.name, f"{self.name}: {match.group(1)} {problem}")

        def fill(match: re.Match[str]) -> str:
            return _url_value(values.get(match.group(1)))

        return _PLACEHOLDER.sub(fill, path) + query_mark + _PLACEHOLDER.sub(fill, query)

    def _values(self, params: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        defaults = {
            key: spec["default"]
            for key, spec in self.parameters.get("properties", {}).items()
            if isinstance(spec, dict) and "default" in spec
        }
        gateway = ctx.gateway_url.rstrip("/")
        return {
            **defaults,
            **params,
            "gateway": _Raw(gateway),
            "tenant_id": ctx.tenant_id,
            "user_id": ctx.user_id,
            "session_id": ctx.session_id,
        }


class _Raw(str):
    """A template value inserted into the URL as it is (the gateway's base URL)."""


def _path_segment_problem(text: str) -> str | None:
    """Why ``text`` cannot be put into a URL path as one segment, or None."""
    if text == "":
        return "must not be empty: it is part of the URL path"
    if text in _DOT_SEGMENTS:
        return f"must not be {text!r}: it would change the URL path"
    if "/" in text or "\\" in text:
        return "must not contain '/' or '\\': it is one segment of the URL path"
    return None


def _url_value(value: Any) -> str:
    return value if isinstance(value, _Raw) else quote(_text(value), safe="")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values.get(whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(values.get(m.group(1))), template)
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


def _route(url: str) -> str:
    return url.split("?", 1)[0]


def load_tools(path: Path | None = None) -> list[Tool]:
    """The shipped ``aura/tools.json``, or ``path``; raise ConfigError with the exact problem."""
    if path is None:
        text = resources.files("aura.agent").joinpath("tools.json").read_text(encoding="utf-8")
        source = "aura/tools.json"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"AURA_TOOLS_FILE {str(path)!r} cannot be read: {exc.strerror}") from exc
        source = str(path)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from exc
    declarations = document.get("tools") if isinstance(document, dict) else None
    if not isinstance(declarations, list):
        raise ConfigError(f"{source} must be a JSON object with a 'tools' list")
    tools = [_declared_tool(source, index, item) for index, item in enumerate(declarations)]
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source} declares {', '.join(duplicates)} more than once")
    return list(tools)


def _declared_tool(source: str, index: int, item: Any) -> HttpTool:
    where = f"{source} tools[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-64 letters, digits, '_' or '-'")
    where = f"{source} tool {name!r}"
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ConfigError(f"{where}: 'description' must be a non-empty string")
    requires_approval = item.get("requires_approval")
    if not isinstance(requires_approval, bool):
        raise ConfigError(f"{where}: 'requires_approval' must be true or false")
    parameters = item.get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ConfigError(f"{where}: 'parameters' must be a JSON schema with \"type\": \"object\"")
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        raise ConfigError(f"{where}: 'parameters' is not a valid JSON schema: {exc.message}") from exc
    http = item.get("http")
    if not isinstance(http, dict):
        raise ConfigError(f"{where}: 'http' must be an object with 'method' and 'url'")
    method = http.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise ConfigError(f"{where}: http.method must be one of {', '.join(sorted(_METHODS))}")
    url = http.get("url")
    if not isinstance(url, str) or not url.startswith(("{gateway}/", "http://", "https://")):
        raise ConfigError(f"{where}: http.url must start with {{gateway}}/, http:// or https://")
    if any(segment in _DOT_SEGMENTS for segment in url.partition("?")[0].split("/")):
        raise ConfigError(f"{where}: http.url must not contain '.' or '..' path segments")
    return HttpTool(name, description, requires_approval, parameters, HttpBinding(method.upper(), url, http.get("body")))
