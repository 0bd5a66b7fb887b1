"""Tools: real functions with real results. Sensitive ones require human approval.

Built-ins work without configuration against the Redis Aura is connected to:
``send_email`` puts the message into the tenant's outbox list, where a mail
relay (or a person) can read it; ``list_open_tasks`` reads the tenant's task hash.
Tools declared in a JSON file call DWP services over HTTP (``aura/http_tools.py``).
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import httpx
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from aura.config import DEFAULT_GATEWAY_URL
from aura.errors import TokenExpired, TokenInvalid, ToolError
from aura.storage import keys
from aura.storage.calls import mapped

OUTBOX_LIMIT = 1000
_ADDRESS = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_CLOSED = frozenset({"done", "completed", "closed", "cancelled"})


@dataclass(frozen=True, slots=True)
class ToolContext:
    tenant_id: str
    user_id: str
    session_id: str
    redis: Redis
    # "Bearer <jwt>" for one DWP call as the user, minted when called (CONTRACT §2.3); None: no user token
    credentials: Callable[[], str] | None = None
    agent_id: str | None = None
    http: httpx.AsyncClient | None = None
    gateway_url: str = DEFAULT_GATEWAY_URL

    def authorization(self, tool: str) -> str | None:
        """The Authorization of one call of ``tool`` to DWP, minted now; None when the session has no user token.

        A ToolError when none may be made: the user's token expired (DWP would answer 401 to it,
        CONTRACT §2.4), or a token stored by an older version no longer verifies. Nothing is sent then.
        """
        if self.credentials is None:
            return None
        try:
            return self.credentials()
        except (TokenExpired, TokenInvalid) as exc:
            why = "has expired" if isinstance(exc, TokenExpired) else "no longer verifies"
            raise ToolError(tool, f"{tool} was not called: the user's token {why}, so DWP would answer HTTP 401") from exc


class Tool(Protocol):
    name: str
    description: str
    requires_approval: bool
    parameters: dict[str, Any]  # JSON schema of the params, checked before approval is asked

    async def run(self, params: Mapping[str, Any], ctx: ToolContext) -> str:
        """Do the work; return a short human-readable result or raise ToolError."""
        ...


class SendEmail:
    name = "send_email"
    description = "Send an email (stored in the tenant's outbox for the mail relay)."
    requires_approval = True
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "to": {"type": "string", "description": "recipient addresses, comma-separated"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
        },
        "required": ["to", "body"],
    }

    async def run(self, params: Mapping[str, Any], ctx: ToolContext) -> str:
        to = params.get("to")
        if not isinstance(to, str) or not to.strip():
            raise ToolError(self.name, "send_email needs a recipient in 'to'")
        recipients = [address.strip() for address in to.split(",") if address.strip()]
        invalid = [address for address in recipients if not _ADDRESS.match(address)]
        if invalid:
            raise ToolError(self.name, f"invalid email address: {', '.join(invalid)}")
        body = params.get("body")
        if not isinstance(body, str) or not body.strip():
            raise ToolError(self.name, "send_email needs a non-empty 'body'")
        subject = params.get("subject") if isinstance(params.get("subject"), str) else ""
        message_id = f"msg_{secrets.token_hex(8)}"
        message = {
            "messageId": message_id,
            "to": recipients,
            "subject": subject,
            "body": body,
            "fromUserId": ctx.user_id,
            "sessionId": ctx.session_id,
            "createdAt": int(time.time() * 1000),
        }
        key = keys.outbox(ctx.tenant_id)
        # Not a MULTI (redis-py's cluster transactions fail while a node is down): in order, on one connection.
        async with mapped("send email"), ctx.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(message, ensure_ascii=False, separators=(",", ":")))
            pipe.ltrim(key, 0, OUTBOX_LIMIT - 1)
            await pipe.execute()
        return f"email {message_id} to {', '.join(recipients)} placed in outbox {key}"


class ListOpenTasks:
    name = "list_open_tasks"
    description = "List the tenant's open tasks due today or earlier."
    requires_approval = False
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"scope": {"type": "string", "enum": ["today"]}},
    }

    async def run(self, params: Mapping[str, Any], ctx: ToolContext) -> str:
        async with mapped("list open tasks"):
            stored = await ctx.redis.hgetall(keys.tasks(ctx.tenant_id))
        raw = {_text(k): _text(v) for k, v in stored.items()}
        today = date.today().isoformat()
        due: list[tuple[str, str]] = []
        for task_id, text in sorted(raw.items()):
            try:
                task = json.loads(text)
            except ValueError:
                continue  # one unreadable task must not hide the others
            if not isinstance(task, dict) or str(task.get("status", "open")).lower() in _CLOSED:
                continue
            due_date = task.get("due")
            if isinstance(due_date, str) and due_date[:10] > today:
                continue
            title = task.get("title") if isinstance(task.get("title"), str) else task_id
            overdue = isinstance(due_date, str) and due_date[:10] < today
            due.append((str(title), " (overdue)" if overdue else ""))
        if not due:
            return "no open tasks for today"
        lines = "; ".join(f"{title}{flag}" for title, flag in due)
        return f"{len(due)} open task{'s' if len(due) != 1 else ''}: {lines}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))  # building one costs far more than using it


def validate_params(tool: Tool, params: Mapping[str, Any]) -> str | None:
    """The first schema violation of ``params`` as a sentence, or None when they are valid."""
    validator = _validator(json.dumps(tool.parameters, sort_keys=True))
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.path))
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.path)
    return f"invalid parameters for {tool.name}: {where + ': ' if where else ''}{first.message}"


class ToolRegistry:
    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def with_tools(self, tools: list[Tool]) -> ToolRegistry:
        """A registry with ``tools`` added; a tool of the same name replaces the earlier one."""
        return ToolRegistry([*self._tools.values(), *tools])

    def openai_schemas(self) -> list[dict[str, Any]]:
        """The tools in Chat Completions' ``tools`` format."""
        return [
            {
                "type": "function",
                "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
            }
            for tool in (self._tools[name] for name in self.names())
        ]


def builtin_tools() -> ToolRegistry:
    return ToolRegistry([SendEmail(), ListOpenTasks()])
