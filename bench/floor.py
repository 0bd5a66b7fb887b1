"""The reference floor: the least a server can do and still serve Aura's sessions.

Bare Starlette + uvicorn (uvloop, httptools): one SSE endpoint, no auth, no state
machine, no session registry, no replay, no heartbeats, no sweeps. It emits the
same frames as Aura for the same prompt (same count, same envelope, same sizes
within a few bytes), and pauses for approval the same way: a per-session future
registered before ``SET hitl:request:{id}``, one ``PSUBSCRIBE hitl:channel:*``
connection per process, resumed by main-service's PUBLISH. Its command
connections come from a bounded pool (8), so its Redis connection count is O(1).

Run as ``python -m bench.floor`` with FLOOR_PORT, REDIS_URL and
FLOOR_HITL_TIMEOUT_SECONDS in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import uvicorn
from redis.asyncio import BlockingConnectionPool, Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HEADERS: Final = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}
DONE: Final = b"data: [DONE]\n\n"
CHANNEL_PREFIX: Final = "hitl:channel:"


class Frames:
    """Aura's envelope and frame encoding, without its classes."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.seq = 0

    def __call__(self, type_: str, data: dict[str, Any]) -> bytes:
        self.seq += 1
        event_id = f"{self.session_id}.{self.seq}"
        now = int(time.time())
        payload = {"type": type_, "version": "1.0", "eventId": event_id, "timestamp": now, "data": data}
        text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
        return f"id: {event_id}\nevent: {type_}\ndata: {text}\n\n".encode("ascii")

    def state(self, source: str, dest: str, trigger: str) -> bytes:
        return self("state", {"sessionId": self.session_id, "from": source, "to": dest, "trigger": trigger})

    def thought(self, content: str, kind: str, now: int) -> list[bytes]:
        """A `thought` and the AI-workspace page's `thought_chain` beside it, as Aura sends them."""
        return [self("thought", {"content": content, "thoughtType": kind, "timestamp": now}),
                self("thought_chain", {"type": kind, "content": content, "timestamp": now})]


class Floor:
    def __init__(self, redis_url: str, hitl_timeout: float) -> None:
        self.redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(redis_url, decode_responses=True, max_connections=8, timeout=5)
        )
        self.subscriber = Redis.from_url(redis_url, decode_responses=True)
        self.hitl_timeout = hitl_timeout
        self.waiters: dict[str, tuple[str, asyncio.Future[bool]]] = {}
        self.subscribed = asyncio.Event()

    async def listen(self) -> None:
        pubsub = self.subscriber.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
        self.subscribed.set()
        async for message in pubsub.listen():
            if message.get("type") != "pmessage":
                continue
            waiter = self.waiters.get(str(message["channel"])[len(CHANNEL_PREFIX) :])
            if waiter is None:
                continue
            try:
                signal = json.loads(message["data"])
            except ValueError:
                continue
            request_id, future = waiter
            if isinstance(signal, dict) and signal.get("requestId") == request_id and not future.done():
                future.set_result(signal.get("type") == "approval")

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()  # a pool handed to Redis() is not closed with it
        await self.subscriber.aclose()

    async def session(self, prompt: str) -> AsyncIterator[bytes]:
        session_id = f"sess_{secrets.token_hex(12)}"
        emit = Frames(session_id)
        now = int(time.time())
        lowered = prompt.lower()
        for frame in emit.thought("Analyzing the request...", "analysis", now):
            yield frame
        if "email" not in lowered:
            for frame in emit.thought("The request needs no tool; I will answer directly.", "planning", now):
                yield frame
            yield emit("plan_step", {"id": "step-1", "title": "Answer", "description": "Compose an answer to the request",
                                     "order": 0, "status": "pending", "confidence": 0.6, "canSkip": False})
            yield emit("thought_chain", {"type": "planning", "content": "Plan:\n1. Answer", "timestamp": now})
            yield emit.state("planning", "executing", "start_execution")
            yield emit("plan_step_update", {"id": "step-1", "status": "executing"})
            yield emit("plan_step_update", {"id": "step-1", "status": "completed"})
            yield emit("content", {"content": "I can send emails (after your approval) and summarize your open tasks. "
                                   f"I have no tool for this request: {prompt.strip()}", "format": "markdown"})
            yield emit.state("executing", "done", "finish")
            yield DONE
            return
        params = {"to": "kim@example.com", "subject": "the release is ready", "body": "the release is ready"}
        for frame in emit.thought("The user wants to send an email to kim@example.com. Sending email needs approval.",
                                  "planning", now):
            yield frame
        yield emit("plan_step", {"id": "step-1", "title": "Draft the email", "description": "Draft an email to kim@example.com",
                                 "order": 0, "status": "pending", "confidence": 0.85, "canSkip": False})
        yield emit("plan_step", {"id": "step-2", "title": "Send the email", "description": "Send the email to kim@example.com",
                                 "order": 1, "status": "pending", "confidence": 0.8, "canSkip": False, "tool": "send_email"})
        yield emit("thought_chain", {"type": "planning", "content": "Plan:\n1. Draft the email\n2. Send the email",
                                     "timestamp": now})
        yield emit.state("planning", "executing", "start_execution")
        yield emit("plan_step_update", {"id": "step-1", "status": "executing"})
        yield emit("plan_step_update", {"id": "step-1", "status": "completed"})
        yield emit("plan_step_update", {"id": "step-2", "status": "executing"})
        request_id = f"req_{secrets.token_hex(12)}"
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiters[session_id] = (request_id, future)
        try:
            record = {"requestId": request_id, "sessionId": session_id, "userId": "1", "tenantId": "1",
                      "actionType": "send_email", "context": params, "status": "pending",
                      "createdAt": int(time.time() * 1000)}
            await self.redis.set(f"hitl:request:{request_id}", json.dumps(record, separators=(",", ":")), ex=1800)
            yield emit.state("executing", "awaiting_approval", "request_approval")
            message = "Approve send_email? Send the email to kim@example.com"
            hitl = {"requestId": request_id, "sessionId": session_id, "actionType": "send_email", "action": "send_email",
                    "message": message, "params": params, "context": params, "requiresApproval": True,
                    "confidence": 0.8, "editableContent": message, "stepId": "step-2",
                    "timeoutSeconds": self.hitl_timeout}
            yield emit("hitl", hitl)
            yield emit("hitl_request", {"id": request_id, **hitl})
            try:
                async with asyncio.timeout(self.hitl_timeout):
                    approved = await future
            except TimeoutError:
                approved = False
        finally:
            self.waiters.pop(session_id, None)
        if not approved:
            yield emit.state("awaiting_approval", "aborted", "reject")
            yield emit("content", {"content": "I did not run send_email: the request was rejected. Reason: not approved",
                                   "format": "markdown"})
            yield emit("error", {"message": "not approved", "error": "not approved", "errorType": "RejectionError",
                                 "code": "E2001", "sessionId": session_id, "reason": "rejected"})
            yield DONE
            return
        yield emit.state("awaiting_approval", "executing", "approve")
        yield emit("plan_step_update", {"id": "step-2", "status": "approved"})
        base = {"tool": "send_email", "params": params, "stepId": "step-2"}
        yield emit("tool_execution", {**base, "status": "executing"})
        result = f"email msg_{secrets.token_hex(8)} to kim@example.com placed in outbox aura:outbox:1"
        yield emit("tool_execution", {**base, "status": "completed", "result": result})
        yield emit("action_execution", {**base, "status": "completed", "result": result})
        yield emit("plan_step_update", {"id": "step-2", "status": "completed"})
        yield emit("content", {"content": f"Send the email: {result}", "format": "markdown",
                               "metadata": {"result": {"type": "text", "title": "Send the email", "content": result}}})
        yield emit.state("executing", "done", "finish")
        yield DONE


def create_app(floor: Floor) -> Starlette:
    async def stream(request: Request) -> Response:
        body = json.loads(await request.body())
        return StreamingResponse(floor.session(str(body.get("prompt", ""))), headers=HEADERS)

    async def health(request: Request) -> Response:
        ok = floor.subscribed.is_set()
        return JSONResponse({"status": "UP" if ok else "DOWN"}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(floor.listen())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await floor.aclose()

    return Starlette(
        routes=[Route("/aura/test/stream", stream, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )


def main() -> None:
    floor = Floor(os.environ["REDIS_URL"], float(os.environ.get("FLOOR_HITL_TIMEOUT_SECONDS", "290")))
    uvicorn.run(
        create_app(floor),
        host="127.0.0.1",
        port=int(os.environ["FLOOR_PORT"]),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
