"""The log writer when Redis hangs, refuses, or answers wrongly; and what it says it did.

Stores here are scripted fakes (no Redis). Written against the survivors of ``make mutate``
(docs/TESTING.md); the writer's ordinary behaviour is in test_log_writer.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from statemachines import SessionMachine

from aura.auth import Principal
from aura.errors import LeaseLost, StoreUnavailable
from aura.ids import new_session_id
from aura.session.events import EventType
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.plan import Plan, PlanStep
from aura.session.replay import ReplayCache
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import F
from aura.session.store import Append
from tests.support.memory import MemoryLogStore

pytestmark = pytest.mark.anyio

WAIT = 5.0  # bound of every wait here
REDIS_TIMEOUT = 0.05
FLUSHER = "aura-log-writer"


@dataclass
class ScriptedStore(MemoryLogStore):
    """A MemoryLogStore that can hang, answer an error for chosen sessions, or answer too few."""

    hang: bool = False
    answer_errors: dict[str, Exception] = field(default_factory=dict)  # session id -> its answer
    short: bool = False
    attempts: list[list[Append]] = field(default_factory=list)

    async def commit(self, appends: Sequence[Append]) -> list[Exception | None]:
        self.attempts.append(list(appends))
        if self.hang:
            await asyncio.Event().wait()
        answers = await super().commit(appends)
        answers = [self.answer_errors.get(a.session_id, answer) for a, answer in zip(appends, answers, strict=True)]
        return answers[:-1] if self.short else answers


@dataclass
class Parts:
    store: ScriptedStore = field(default_factory=ScriptedStore)
    machine: SessionMachine = field(default_factory=SessionMachine)
    replay: ReplayCache = field(default_factory=ReplayCache)
    retry_backoff: tuple[float, ...] = (0.01,)
    writer: LogWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = LogWriter(self.store, Notifier(), self.replay, retry_backoff=self.retry_backoff,
                                redis_timeout_seconds=REDIS_TIMEOUT)

    def new(self) -> Session:
        session = Session(new_session_id(), Principal("1", "1"), SessionRequest("hi", {}))
        self.machine.add(session.model)
        return session

    def opened(self) -> Session:
        session = self.new()
        self.writer.open(session)
        return session


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    made = Parts()
    yield made
    await made.writer.aclose()


def say(parts: Parts, session: Session, text: str = "a") -> int:
    return parts.writer.emit(session, EventType.CONTENT, {"content": text}).seq


def flusher_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == FLUSHER and not task.done()]


async def failure_of(parts: Parts, session: Session) -> BaseException:
    with pytest.raises((StoreUnavailable, LeaseLost)) as caught:
        await asyncio.wait_for(parts.writer.sync(session), WAIT)
    return caught.value


# -- what is written ------------------------------------------------------------------------------
async def test_an_event_is_framed_with_its_session_and_seq(parts: Parts) -> None:
    session = parts.opened()
    event = parts.writer.emit(session, EventType.CONTENT, {"content": "a"})
    assert str(event.event_id) == f"{session.id}.1"
    assert event.frame.startswith(f"id: {session.id}.1\n".encode())
    await asyncio.wait_for(parts.writer.sync(session), WAIT)
    assert parts.store.frames[session.id][0][1].startswith(f"id: {session.id}.1\n")


async def test_opening_a_session_with_a_plan_does_not_write_the_plan_again(parts: Parts) -> None:
    session = parts.new()
    session.set_plan(Plan("t", [PlanStep("s1", "Read", "read it")]))  # already stored by the previous driver
    parts.writer.open(session)
    say(parts, session)
    await asyncio.wait_for(parts.writer.sync(session), WAIT)
    assert F.PLAN not in parts.store.attempts[0][0].fields
    session.record_outcome("s1", "done")
    say(parts, session)
    await asyncio.wait_for(parts.writer.sync(session), WAIT)
    assert F.PLAN in parts.store.attempts[1][0].fields


async def test_rounds_counts_every_commit(parts: Parts) -> None:
    session = parts.opened()
    for text in ("a", "b", "c"):
        say(parts, session, text)
        await asyncio.wait_for(parts.writer.sync(session), WAIT)
    assert parts.writer.rounds == 3


async def test_the_flusher_is_one_named_task_while_a_commit_is_in_flight(parts: Parts) -> None:
    gate = parts.store.gate = asyncio.Event()
    session = parts.opened()
    say(parts, session)
    await asyncio.sleep(0)
    assert len(flusher_tasks()) == 1
    gate.set()
    await asyncio.wait_for(parts.writer.sync(session), WAIT)


# -- a released session -------------------------------------------------------------------------------
async def test_a_released_session_reports_its_lease_lost_with_its_id(parts: Parts) -> None:
    session = parts.opened()
    parts.writer.release(session)
    with pytest.raises(LeaseLost) as caught:
        say(parts, session)
    assert caught.value.session_id == session.id


# -- Redis hangs ----------------------------------------------------------------------------------------
async def test_a_hung_commit_fails_the_round_after_the_redis_timeout_and_its_retries(parts: Parts) -> None:
    parts.store.hang = True
    session = parts.opened()
    say(parts, session)
    error = await failure_of(parts, session)
    assert isinstance(error, StoreUnavailable)
    assert error.operation == "append"
    assert isinstance(error.cause, TimeoutError)
    assert len(parts.store.attempts) == 2  # the first try and one retry


async def test_a_creation_redis_does_not_answer_in_time_is_reported_at_once(parts: Parts) -> None:
    parts.store.hang = True
    session = parts.new()
    with pytest.raises(StoreUnavailable) as caught:
        await asyncio.wait_for(parts.writer.create(session, {F.SESSION_ID: session.id}, timeout=REDIS_TIMEOUT / 5), WAIT)
    assert caught.value.operation == "create session"
    assert isinstance(caught.value.cause, TimeoutError)
    assert isinstance(caught.value.__cause__, TimeoutError)
    with pytest.raises(StoreUnavailable):  # the log stays failed
        say(parts, session)


# -- Redis refuses -------------------------------------------------------------------------------------
async def test_a_refused_commit_is_retried_then_reported_with_redis_error_as_cause(parts: Parts) -> None:
    refused = [RedisConnectionError("refused 1"), RedisConnectionError("refused 2")]
    parts.store.failures.extend(refused)
    session = parts.opened()
    say(parts, session)
    error = await failure_of(parts, session)
    assert isinstance(error, StoreUnavailable)
    assert error.operation == "append"
    assert error.cause is refused[1] and error.__cause__ is refused[1]


async def test_a_refused_creation_is_not_retried_and_is_reported_before_any_back_off() -> None:
    parts = Parts(retry_backoff=(30.0,))  # a retry would outlast the test's bound
    refused = RedisConnectionError("refused")
    parts.store.failures.append(refused)
    session = parts.new()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await asyncio.wait_for(parts.writer.create(session, {F.SESSION_ID: session.id}, timeout=WAIT), WAIT)
        assert caught.value.operation == "append"
        assert caught.value.cause is refused
        assert parts.store.commits == []  # no second, empty, commit either
    finally:
        await parts.writer.aclose()


async def test_an_error_answered_for_one_session_fails_only_that_session(parts: Parts) -> None:
    broken, fine = parts.opened(), parts.opened()
    answered = ResponseError("WRONGTYPE")
    parts.store.answer_errors[broken.id] = answered
    say(parts, broken)
    say(parts, fine)
    error = await failure_of(parts, broken)
    assert isinstance(error, StoreUnavailable)
    assert error.operation == "append"
    assert error.cause is answered and error.__cause__ is answered
    await asyncio.wait_for(parts.writer.sync(fine), WAIT)


async def test_a_store_that_answers_for_fewer_sessions_than_it_was_given_fails_them(parts: Parts) -> None:
    parts.store.short = True
    first, second = parts.opened(), parts.opened()
    say(parts, first)
    say(parts, second)
    for session in (first, second):
        error = await failure_of(parts, session)
        assert isinstance(error, StoreUnavailable) and isinstance(error.cause, ValueError)


async def test_an_unexpected_store_error_fails_the_round_with_it_as_the_cause(parts: Parts) -> None:
    bug = RuntimeError("a bug in the store")
    parts.store.failures.append(bug)
    session = parts.opened()
    say(parts, session)
    error = await failure_of(parts, session)
    assert isinstance(error, StoreUnavailable)
    assert error.cause is bug and error.__cause__ is bug


# -- shutting down ----------------------------------------------------------------------------------------
async def test_aclose_cancels_a_commit_in_flight_and_returns(parts: Parts) -> None:
    parts.store.gate = asyncio.Event()  # never set: the commit waits for ever
    session = parts.opened()
    say(parts, session)
    await asyncio.sleep(0)
    assert len(flusher_tasks()) == 1
    await asyncio.wait_for(parts.writer.aclose(), WAIT)
    assert flusher_tasks() == []


async def test_aclose_of_an_idle_writer_is_a_no_op(parts: Parts) -> None:
    await asyncio.wait_for(parts.writer.aclose(), WAIT)
    session = parts.opened()
    say(parts, session)
    await asyncio.wait_for(parts.writer.sync(session), WAIT)
    await asyncio.wait_for(parts.writer.aclose(), WAIT)
    assert flusher_tasks() == []
