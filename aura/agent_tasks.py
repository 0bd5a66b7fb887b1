"""Optional AgentTask reporting to DWP main-service (CONTRACT §5.4), enabled by AURA_AGENT_TASK_URL.

The reporter follows a session's feed like any SSE client, so the agent run is
never slowed or broken by main-service: every call is bounded and failures are
only logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from aura.events import AgentEvent, EventType
from aura.session import Session

log = logging.getLogger(__name__)

TASK_TYPE = "AURA_SESSION"


class AgentTaskReporter:
    def __init__(self, http: httpx.AsyncClient, base_url: str, *, timeout_seconds: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, session: Session) -> None:
        task = asyncio.create_task(self._follow(session), name=f"aura-agent-task-{session.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, session: Session) -> None:
        headers = _headers(session)
        created = await self._call(
            "POST",
            self._base,
            headers,
            json={
                "taskType": TASK_TYPE,
                "userId": session.owner.user_id,
                "tenantId": session.owner.tenant_id,
                "description": session.request.prompt[:500],
                "inputData": json.dumps({"sessionId": session.id, "prompt": session.request.prompt}, ensure_ascii=False),
            },
        )
        task_id = _task_id(created)
        if task_id is None:
            return
        await self._call("POST", f"{self._base}/{task_id}/start", headers)
        cursor = 0
        steps = _Steps()
        while True:
            events = await session.feed.read_after(cursor, timeout=60)
            for event in events:
                await self._report(task_id, session, event, headers, steps)
            if events:
                cursor = events[-1].seq
            elif session.feed.closed:
                return

    async def _report(
        self, task_id: str, session: Session, event: AgentEvent, headers: dict[str, str], steps: _Steps
    ) -> None:
        if event.type is EventType.PLAN_STEP:
            steps.planned += 1
        elif event.type is EventType.PLAN_STEP_UPDATE and event.data.get("status") == "completed":
            steps.completed += 1
            progress = int(100 * steps.completed / steps.planned) if steps.planned else 100
            await self._call(
                "PATCH",
                f"{self._base}/{task_id}/progress",
                headers,
                json={"progress": min(progress, 99), "description": f"step {event.data.get('id')} completed"},
            )
        elif event.type is EventType.STATE and event.data.get("to") == "done":
            result = "".join(
                e.data.get("content", "") for e in session.feed.events_after(0) if e.type is EventType.CONTENT
            )
            await self._call("POST", f"{self._base}/{task_id}/complete", headers, content=result.encode("utf-8"),
                             content_type="text/plain; charset=utf-8")
        elif event.type is EventType.ERROR:
            await self._call("POST", f"{self._base}/{task_id}/fail", headers,
                             params={"errorMessage": str(event.data.get("message", ""))[:500]})

    async def _call(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        call_headers = dict(headers)
        if content_type:
            call_headers["Content-Type"] = content_type
        try:
            response = await self._http.request(
                method, url, headers=call_headers, json=json, content=content, params=params, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            log.warning("AgentTask %s %s failed: %s", method, url, type(exc).__name__)
            return None
        if response.status_code >= 400:
            log.warning("AgentTask %s %s answered HTTP %d", method, url, response.status_code)
            return None
        try:
            return response.json()
        except ValueError:
            return None


class _Steps:
    """Progress as the feed tells it: steps planned and steps completed so far."""

    def __init__(self) -> None:
        self.planned = 0
        self.completed = 0


def _headers(session: Session) -> dict[str, str]:
    headers = {
        "X-Tenant-ID": session.owner.tenant_id,
        "X-User-ID": session.owner.user_id,
        "X-DWP-Source": "AURA",
        "X-DWP-Caller-Type": "AGENT",
    }
    if session.request.authorization:
        headers["Authorization"] = session.request.authorization
    if session.request.agent_id:
        headers["X-Agent-ID"] = session.request.agent_id
    return headers


def _task_id(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    task_id = data.get("taskId") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None
