"""AgentTask reports to main-service (CONTRACT §5.4), from a session's feed; main-service mocked with respx."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import cast

import httpx
import pytest
import respx
from statemachines import State, Transition, Trigger

from aura.auth import Delegation, Delegator, Principal, TokenVerifier
from aura.dwp.agent_tasks import TASK_TYPE, AgentTaskReporter
from aura.errors import REJECTED
from aura.ids import EventId, new_session_id
from aura.session import events
from aura.session.events import AgentEvent, EventData
from aura.session.feed import SessionFeed
from aura.session.plan import PlanStep
from aura.session.replay import Frame
from aura.session.session import Session, SessionRequest
from tests.support.auth import SECRET
from tests.support.delegated_tokens import delegated_claims
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

BASE = "http://main-service.test/api/main/agent/tasks"
TASK = "task-123"
BOUND_SECONDS = 5.0
S1 = PlanStep("s1", "Read", "read mail", tool="mail.list")
S2 = PlanStep("s2", "Answer", "answer")


class FakeFeed:
    """A session's feed: ``read_after`` answers the prepared batches after the cursor, then the log ends."""

    def __init__(self, batches: list[list[Frame]], *, forever: bool = False) -> None:
        self.batches = list(batches)
        self.forever = forever  # never end: a session still running
        self.closed = False
        self.draining = False
        self.cursors: list[int] = []
        self.let_go = False  # close(): the reporter stopped following

    def close(self) -> None:
        self.let_go = True

    async def read_after(self, seq: int, *, timeout: float) -> list[Frame]:
        self.cursors.append(seq)
        if self.batches:
            return [(n, frame) for n, frame in self.batches.pop(0) if n > seq]
        if self.forever:
            await asyncio.Event().wait()
        self.closed = True
        return []


USER_EXP = int(time.time()) + 3600  # the user's own token's exp
DELEGATION = Delegation({"sub": "42", "tenant_id": "7"}, USER_EXP)


def new_session(*, delegation: Delegation | None = DELEGATION, agent_id: str | None = "agent-7",
                prompt: str = "메일 정리해줘") -> Session:
    return Session(new_session_id(), Principal(user_id="42", tenant_id="7"),
                   SessionRequest(prompt, {"activeApp": "mail"}, agent_id=agent_id, delegation=delegation))


def frames_of(session: Session, items: list[EventData], first_seq: int = 1) -> list[Frame]:
    made = [AgentEvent.create(EventId(session.id, n), type_, data) for n, (type_, data) in enumerate(items, first_seq)]
    return [(e.seq, e.frame) for e in made]


def to_state(session: Session, source: State, dest: State, trigger: Trigger, reason: str | None = None) -> EventData:
    return events.state_change(session.id, Transition(source, dest, trigger), reason)


def a_successful_run(session: Session) -> list[EventData]:
    return [
        to_state(session, State.PLANNING, State.EXECUTING, Trigger.START_EXECUTION),
        events.thought("reading first", "planning"),
        events.plan_step(S1, 1),
        events.plan_step(S2, 2),
        events.step_status(S1, "executing"),
        events.step_status(S1, "completed"),
        events.step_status(S2, "executing"),
        events.step_status(S2, "completed"),
        events.content("Hello, "),
        events.content("세계"),
        to_state(session, State.EXECUTING, State.DONE, Trigger.FINISH),
    ]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=False) as client:  # no CA bundle to load: main-service is mocked
        yield client


@pytest.fixture
def main_service() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(BASE, name="create").respond(201, json={"status": "SUCCESS", "data": {"taskId": TASK}})
        router.post(f"{BASE}/{TASK}/start", name="start").respond(200, json={"status": "SUCCESS"})
        router.patch(f"{BASE}/{TASK}/progress", name="progress").respond(200, json={"status": "SUCCESS"})
        router.post(f"{BASE}/{TASK}/complete", name="complete").respond(200, json={"status": "SUCCESS"})
        router.post(f"{BASE}/{TASK}/fail", name="fail").respond(200, json={"status": "SUCCESS"})
        yield router


def reporter_for(http: httpx.AsyncClient, feed: FakeFeed, seen: list[str] | None = None) -> AgentTaskReporter:
    def feeds(session_id: str) -> SessionFeed:
        if seen is not None:
            seen.append(session_id)
        return cast(SessionFeed, feed)  # a fake with what the reporter reads

    delegator = Delegator(TokenVerifier(SECRET), lifetime_seconds=120)
    return AgentTaskReporter(http, BASE + "/", feeds, timeout_seconds=2, delegator=delegator)


async def report(reporter: AgentTaskReporter, session: Session) -> None:
    """Track ``session`` and wait (bounded) until its reporter task ends; its exception, if any, is raised."""
    reporter.track(session)
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"aura-agent-task-{session.id}"]
    async with asyncio.timeout(BOUND_SECONDS):
        await task


def calls_to(router: respx.MockRouter, name: str) -> list[httpx.Request]:
    return [call.request for call in router.routes[name].calls]


# -- the happy path ------------------------------------------------------------------------------
async def test_the_task_is_created_started_advanced_and_completed_with_the_answer(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session()
    run = frames_of(session, a_successful_run(session))
    feed = FakeFeed([run[:5], run[5:]])
    seen: list[str] = []
    await report(reporter_for(http, feed, seen), session)

    [create] = calls_to(main_service, "create")
    assert create.url == BASE
    assert json.loads(create.content) == {
        "taskType": TASK_TYPE,
        "userId": "42",
        "tenantId": "7",
        "description": "메일 정리해줘",
        "inputData": json.dumps({"sessionId": session.id, "prompt": "메일 정리해줘"}, ensure_ascii=False),
    }
    assert TASK_TYPE == "AURA_SESSION"
    assert len(calls_to(main_service, "start")) == 1
    progress = [json.loads(r.content) for r in calls_to(main_service, "progress")]
    assert progress == [
        {"progress": 50, "description": "step s1 completed"},
        {"progress": 99, "description": "step s2 completed"},  # 100 % is the completion's, not a step's
    ]
    [complete] = calls_to(main_service, "complete")
    assert complete.content == "Hello, 세계".encode()
    assert complete.headers["content-type"] == "text/plain; charset=utf-8"
    assert calls_to(main_service, "fail") == []
    assert seen == [session.id]
    assert feed.cursors == [0, 5, 11]


async def test_the_calls_are_made_in_order(http: httpx.AsyncClient, main_service: respx.MockRouter) -> None:
    session = new_session()
    await report(reporter_for(http, FakeFeed([frames_of(session, a_successful_run(session))])), session)
    paths = [(call.request.method, call.request.url.path.rsplit("/", 1)[-1]) for call in main_service.calls]
    assert paths == [("POST", "tasks"), ("POST", "start"), ("PATCH", "progress"), ("PATCH", "progress"),
                     ("POST", "complete")]


async def test_progress_without_planned_steps_is_capped_at_99(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session()
    feed = FakeFeed([frames_of(session, [events.step_status(S1, "completed")])])
    await report(reporter_for(http, feed), session)
    assert [json.loads(r.content)["progress"] for r in calls_to(main_service, "progress")] == [99]


async def test_a_failed_run_fails_the_task_with_the_error_message(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session()
    items = [
        to_state(session, State.PLANNING, State.EXECUTING, Trigger.START_EXECUTION),
        events.plan_step(S1, 1),
        events.error(REJECTED, "거절되었습니다: " + "x" * 600, session_id=session.id, reason="rejected"),
        to_state(session, State.AWAITING_APPROVAL, State.ABORTED, Trigger.REJECT, "rejected"),
    ]
    await report(reporter_for(http, FakeFeed([frames_of(session, items)])), session)

    [fail] = calls_to(main_service, "fail")
    message = fail.url.params["errorMessage"]
    assert message.startswith("거절되었습니다: x") and len(message) == 500
    assert calls_to(main_service, "complete") == [] and calls_to(main_service, "progress") == []


async def test_the_description_is_the_prompt_cut_at_500_chars(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session(prompt="p" * 800)
    await report(reporter_for(http, FakeFeed([])), session)
    body = json.loads(calls_to(main_service, "create")[0].content)
    assert body["description"] == "p" * 500
    assert json.loads(body["inputData"])["prompt"] == "p" * 800


# -- headers -------------------------------------------------------------------------------------
async def test_every_call_carries_the_outbound_dwp_headers(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session()
    run = a_successful_run(session) + [events.error(REJECTED, "late", session_id=None, reason=None)]
    await report(reporter_for(http, FakeFeed([frames_of(session, run)])), session)

    assert {route.name for route in main_service.routes if route.called} == {
        "create", "start", "progress", "complete", "fail"}
    for call in main_service.calls:
        headers = call.request.headers
        assert headers["X-Tenant-ID"] == "7"
        assert headers["X-User-ID"] == "42"
        assert headers["X-DWP-Source"] == "AURA"
        assert headers["X-DWP-Caller-Type"] == "AGENT"
        assert headers["X-Agent-ID"] == "agent-7"
        claims = delegated_claims(headers["Authorization"])
        assert (claims["sub"], claims["tenant_id"], claims["azp"]) == ("42", "7", "aura")
        assert claims["exp"] <= min(claims["iat"] + 120, USER_EXP)


async def test_each_call_carries_a_token_minted_for_it(
    http: httpx.AsyncClient, main_service: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report can come minutes after the session began (an approval wait): each call's token is new."""
    ticks = itertools.count(int(time.time()), 60)  # a minute passes between any two readings of the clock
    monkeypatch.setattr("aura.auth.time.time", lambda: next(ticks))
    session = new_session()
    await report(reporter_for(http, FakeFeed([frames_of(session, a_successful_run(session))])), session)
    issued = [delegated_claims(call.request.headers["Authorization"])["iat"] for call in main_service.calls]
    assert len(issued) == 5 and issued == sorted(set(issued))


async def test_once_the_users_token_expired_no_call_is_sent(
    http: httpx.AsyncClient, main_service: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """What main-service would answer 401 is not sent at all: the report is best effort (DECISIONS #20)."""
    session = new_session(delegation=Delegation({"sub": "42", "tenant_id": "7"}, int(time.time()) - 1))
    await report(reporter_for(http, FakeFeed([frames_of(session, a_successful_run(session))])), session)
    assert main_service.calls.call_count == 0
    assert "skipped: the user's token has expired" in caplog.text


async def test_without_a_token_or_agent_id_those_headers_are_not_sent(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session(delegation=None, agent_id=None)
    await report(reporter_for(http, FakeFeed([frames_of(session, a_successful_run(session))])), session)
    assert main_service.calls.call_count == 5
    for call in main_service.calls:
        assert "authorization" not in call.request.headers and "x-agent-id" not in call.request.headers
        assert call.request.headers["X-Tenant-ID"] == "7"


# -- main-service failing ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [httpx.Response(500, text="boom"), httpx.ConnectError("connection refused"), httpx.ReadTimeout("slow"),
     httpx.Response(200, text="not json"), httpx.Response(200, json={"data": {}}), httpx.Response(200, json=[1])],
    ids=["http-500", "connect-error", "timeout", "not-json", "no-task-id", "not-an-object"],
)
async def test_a_task_that_could_not_be_created_is_not_followed_and_nothing_raises(
    http: httpx.AsyncClient, main_service: respx.MockRouter, answer: httpx.Response | Exception
) -> None:
    route = main_service.routes["create"]
    if isinstance(answer, Exception):
        route.side_effect = answer
    else:
        route.return_value = answer
    seen: list[str] = []
    session = new_session()
    await report(reporter_for(http, FakeFeed([frames_of(session, a_successful_run(session))]), seen), session)
    assert route.call_count == 1
    assert [call.request.url.path for call in main_service.calls] == ["/api/main/agent/tasks"]
    assert seen == []  # the feed was never opened


async def test_failures_after_creation_never_raise_and_the_reporter_follows_to_the_end(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    main_service.routes["start"].return_value = httpx.Response(500)
    main_service.routes["progress"].side_effect = httpx.ConnectError("connection refused")
    main_service.routes["complete"].return_value = httpx.Response(503, json={"status": "ERROR"})
    session = new_session()
    feed = FakeFeed([frames_of(session, a_successful_run(session))])
    await report(reporter_for(http, feed), session)
    assert main_service.routes["start"].call_count == 1
    assert main_service.routes["progress"].call_count == 2
    assert main_service.routes["complete"].call_count == 1
    assert feed.closed
    assert feed.let_go  # regression: a reporter that fell back to Redis kept its log subscription


async def test_a_main_service_that_is_down_for_every_call_never_raises(http: httpx.AsyncClient) -> None:
    with respx.mock() as router:
        router.route().mock(side_effect=httpx.ConnectError("connection refused"))
        session = new_session()
        await report(reporter_for(http, FakeFeed([])), session)
        assert router.calls.call_count == 1


async def test_aclose_stops_a_reporter_that_follows_a_running_session(
    http: httpx.AsyncClient, main_service: respx.MockRouter
) -> None:
    session = new_session()
    feed = FakeFeed([frames_of(session, a_successful_run(session)[:3])], forever=True)
    reporter = reporter_for(http, feed)
    reporter.track(session)
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"aura-agent-task-{session.id}"]
    await until(lambda: feed.cursors == [0, 3])  # waiting for more events
    async with asyncio.timeout(BOUND_SECONDS):
        await reporter.aclose()
    assert task.cancelled()


async def until(condition: Callable[[], bool]) -> None:
    await wait_until(condition, BOUND_SECONDS, interval=0.001)
