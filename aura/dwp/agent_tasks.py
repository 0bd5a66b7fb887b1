"""Optional AgentTask reporting to DWP main-service (CONTRACT §5.4), enabled by AURA_AGENT_TASK_URL.

The reporter follows a session's feed like any SSE client, so the agent run is
never slowed or broken by main-service: every call is bounded and failures are
only logged. Each call carries a token minted for it from the session's
delegation (a report may come minutes after the session began, past an approval
wait); once the user's own token has expired, calls are skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from aura.auth import Delegator
from aura.errors import TokenExpired, TokenInvalid
from aura.session.events import EventType
from aura.session.feed import SessionFeed
from aura.dwp.headers import outbound_headers
from aura.session.session import Session
from aura.telemetry.log_context import bound

log = logging.getLogger(__name__)

TASK_TYPE = "AURA_SESSION"


class AgentTaskReporter:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        feed: Callable[[str], SessionFeed],
        *,
        timeout_seconds: float,
        delegator: Delegator | None = None,
    ) -> None:
        self._http = http
        self._feed = feed
        self._base = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._delegator = delegator  # None: calls carry no user token
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, session: Session) -> None:
        # The task copies the context as it is here: its log lines carry the session's ids.
        with bound(session_id=session.id, tenant_id=session.owner.tenant_id):
            task = asyncio.create_task(self._follow(session), name=f"aura-agent-task-{session.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, session: Session) -> None:
        created = await self._call(
            "POST",
            self._base,
            session,
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
        await self._call("POST", f"{self._base}/{task_id}/start", session)
        feed = self._feed(session.id)
        cursor = 0
        steps = _Steps()
        try:
            while True:
                frames = await feed.read_after(cursor, timeout=60)
                for seq, frame in frames:
                    await self._report(task_id, _payload(frame), session, steps)
                    cursor = seq
                if not frames and (feed.closed or feed.draining):
                    return
        finally:
            feed.close()  # a feed that fell back to Redis subscribed to the session's log

    async def _report(self, task_id: str, event: dict[str, Any], session: Session, steps: _Steps) -> None:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == EventType.PLAN_STEP.value:
            steps.planned += 1
        elif kind == EventType.CONTENT.value:
            steps.answer += str(data.get("content", ""))
        elif kind == EventType.PLAN_STEP_UPDATE.value and data.get("status") == "completed":
            steps.completed += 1
            progress = int(100 * steps.completed / steps.planned) if steps.planned else 100
            await self._call(
                "PATCH",
                f"{self._base}/{task_id}/progress",
                session,
                json={"progress": min(progress, 99), "description": f"step {data.get('id')} completed"},
            )
        elif kind == EventType.STATE.value and data.get("to") == "done":
            await self._call(
                "POST",
                f"{self._base}/{task_id}/complete",
                session,
                content=steps.answer.encode("utf-8"),
                content_type="text/plain; charset=utf-8",
            )
        elif kind == EventType.ERROR.value:
            await self._call(
                "POST", f"{self._base}/{task_id}/fail", session, params={"errorMessage": str(data.get("message", ""))[:500]}
            )

    async def _call(
        self,
        method: str,
        url: str,
        session: Session,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            call_headers = self._headers(session)
        except (TokenExpired, TokenInvalid):  # DWP would answer 401: not sent
            log.warning("AgentTask %s %s skipped: the user's token has expired or no longer verifies", method, url)
            return None
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

    def _headers(self, session: Session) -> dict[str, str]:
        """The outbound headers of one call, with a token minted for it (TokenExpired, TokenInvalid)."""
        request = session.request
        grant = request.delegation
        return outbound_headers(
            tenant_id=session.owner.tenant_id,
            user_id=session.owner.user_id,
            authorization=self._delegator.authorization(grant, session.owner) if self._delegator and grant else None,
            agent_id=request.agent_id,
        )


class _Steps:
    """Progress as the feed tells it: steps planned and completed so far, and the answer."""

    def __init__(self) -> None:
        self.planned = 0
        self.completed = 0
        self.answer = ""


def _payload(frame: bytes) -> dict[str, Any]:
    for line in frame.decode("ascii").split("\n"):
        if line.startswith("data: {"):
            body = json.loads(line[6:])
            return body if isinstance(body, dict) else {}
    return {}




def _task_id(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    task_id = data.get("taskId") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None
