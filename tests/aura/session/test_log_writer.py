"""The log writer without Redis: group commits, visibility after the acknowledgement, failures, the end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
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
from aura.session.snapshot import F, encode_identity
from aura.session.store import Append
from tests.support.memory import MemoryLogStore
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 5.0  # a bound for every wait; CI is a loaded 2-core machine


@dataclass
class RecordingStore(MemoryLogStore):
    """A MemoryLogStore that also keeps the appends of each acknowledged commit, and counts attempts."""

    attempts: int = 0  # commit calls begun (a held commit counts from the moment it waits at the gate)
    appends: list[list[Append]] = field(default_factory=list)  # per acknowledged commit

    async def commit(self, appends: Sequence[Append]) -> list[Exception | None]:
        self.attempts += 1
        answers = await super().commit(appends)
        self.appends.append(list(appends))
        return answers


@dataclass
class Parts:
    store: RecordingStore
    notifier: Notifier
    replay: ReplayCache
    writer: LogWriter
    machine: SessionMachine

    def session(self, prompt: str = "hi") -> Session:
        session = Session(new_session_id(), Principal("1", "1"), SessionRequest(prompt, {}))
        self.machine.add(session.model)
        self.writer.open(session)
        return session


@pytest.fixture
async def parts() -> Parts:
    store = RecordingStore()
    notifier, replay = Notifier(), ReplayCache()
    # A commit held at the gate must not hit the Redis timeout on a slow machine: 5 s, not 1 s.
    writer = LogWriter(store, notifier, replay, redis_timeout_seconds=WAIT_SECONDS, retry_backoff=(0.01, 0.01))
    return Parts(store, notifier, replay, writer, SessionMachine())


async def until(condition: Callable[[], bool]) -> None:
    await wait_until(condition, WAIT_SECONDS, interval=0.001)


def hold(store: MemoryLogStore) -> asyncio.Event:
    """Make the next commits wait until the returned gate is set."""
    gate = store.gate = asyncio.Event()
    return gate


def replay_state(replay: ReplayCache, session: Session, *, after: int) -> tuple[list[int], bool]:
    """The seqs the replay cache has after ``after``, and whether it says the log ended."""
    answer = replay.after(session.id, after)
    assert answer is not None, "the replay cache cannot answer"
    frames, ended = answer
    return [seq for seq, _ in frames], ended


def seqs_in_replay(replay: ReplayCache, session: Session, after: int = 0) -> list[int]:
    return replay_state(replay, session, after=after)[0]


def content(writer: LogWriter, session: Session, text: str) -> int:
    return writer.emit(session, EventType.CONTENT, {"content": text}).seq


def a_plan() -> Plan:
    return Plan("think", [PlanStep("s1", "Step 1", "first"), PlanStep("s2", "Step 2", "second", tool="mail")])


# -- group commit ---------------------------------------------------------------------------------
async def test_events_of_many_sessions_emitted_before_the_flusher_runs_go_out_in_one_commit(parts: Parts) -> None:
    sessions = [parts.session() for _ in range(5)]
    for session in sessions:
        content(parts.writer, session, "a")
        content(parts.writer, session, "b")
    async with asyncio.timeout(WAIT_SECONDS):
        for session in sessions:
            await parts.writer.sync(session)
    assert parts.store.commits == [[s.id for s in sessions]]
    assert parts.writer.rounds == 1
    for session in sessions:
        assert parts.store.seqs(session.id) == [1, 2]


async def test_events_emitted_while_a_commit_is_in_flight_go_in_the_next_commit_with_the_snapshot_as_it_is_then(
    parts: Parts,
) -> None:
    first, second = parts.session(), parts.session()
    gate = hold(parts.store)
    content(parts.writer, first, "1")
    await until(lambda: parts.store.attempts == 1)  # the first commit is in flight

    content(parts.writer, first, "2")
    content(parts.writer, second, "x")
    first.answered(7)  # progress made after the first commit was taken
    gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(first)
        await parts.writer.sync(second)

    assert parts.store.commits == [[first.id], [first.id, second.id]]
    [one], [two, other] = parts.store.appends
    assert [seq for seq, _ in one.frames] == [1] and one.fields[F.SEQ] == "1"
    assert one.fields[F.ANSWERED_CHARS] == "0"
    assert [seq for seq, _ in two.frames] == [2] and two.fields[F.SEQ] == "2"
    assert two.fields[F.ANSWERED_CHARS] == "7"
    assert [seq for seq, _ in other.frames] == [1]
    assert parts.store.seqs(first.id) == [1, 2]


async def test_an_event_reaches_the_replay_cache_and_the_notifier_only_after_the_store_acknowledged_it(
    parts: Parts,
) -> None:
    session = parts.session()
    woken = parts.notifier.event(session.id)
    gate = hold(parts.store)
    content(parts.writer, session, "1")
    await until(lambda: parts.store.attempts == 1)

    assert parts.replay.after(session.id, 0) == ([], False)
    assert not woken.is_set()
    assert parts.store.seqs(session.id) == []

    gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    assert woken.is_set()
    assert seqs_in_replay(parts.replay, session) == [1]
    assert parts.store.seqs(session.id) == [1]


# -- sync -----------------------------------------------------------------------------------------
async def test_sync_returns_only_after_the_sessions_events_are_committed(parts: Parts) -> None:
    session = parts.session()
    gate = hold(parts.store)
    content(parts.writer, session, "1")
    content(parts.writer, session, "2")
    syncing = asyncio.create_task(parts.writer.sync(session))
    await until(lambda: parts.store.attempts == 1)
    assert not syncing.done()

    gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await syncing
    assert parts.store.seqs(session.id) == [1, 2]


async def test_sync_waits_for_events_emitted_during_an_in_flight_commit(parts: Parts) -> None:
    session = parts.session()
    gate = hold(parts.store)
    content(parts.writer, session, "1")
    await until(lambda: parts.store.attempts == 1)
    content(parts.writer, session, "2")
    syncing = asyncio.create_task(parts.writer.sync(session))
    second_gate = hold(parts.store)  # the second commit waits at a gate of its own
    gate.set()
    await until(lambda: parts.store.attempts == 2)
    assert parts.store.seqs(session.id) == [1]
    assert not syncing.done()

    second_gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await syncing
    assert parts.store.seqs(session.id) == [1, 2]


async def test_sync_without_anything_emitted_returns_at_once(parts: Parts) -> None:
    session = parts.session()
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    assert parts.store.commits == []


async def test_sync_raises_lease_lost_for_a_lost_session_while_the_others_in_the_commit_succeed(parts: Parts) -> None:
    lost, kept = parts.session(), parts.session()
    parts.store.lost.add(lost.id)
    content(parts.writer, lost, "1")
    content(parts.writer, kept, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(LeaseLost) as raised:
            await parts.writer.sync(lost)
        await parts.writer.sync(kept)

    assert raised.value.session_id == lost.id
    assert parts.store.commits == [[lost.id, kept.id]]
    assert parts.store.seqs(kept.id) == [1] and parts.store.seqs(lost.id) == []
    assert seqs_in_replay(parts.replay, kept) == [1]
    assert seqs_in_replay(parts.replay, lost) == []  # nothing the store refused is shown


async def test_once_a_sessions_log_failed_every_later_emit_raises_the_same_error(parts: Parts) -> None:
    session = parts.session()
    parts.store.lost.add(session.id)
    content(parts.writer, session, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(LeaseLost) as raised:
            await parts.writer.sync(session)
    failure = raised.value

    for _ in range(3):
        with pytest.raises(LeaseLost) as again:
            content(parts.writer, session, "more")
        assert again.value is failure
    with pytest.raises(LeaseLost) as on_sync:
        await parts.writer.sync(session)
    assert on_sync.value is failure
    with pytest.raises(LeaseLost) as on_close:
        await parts.writer.close(session)
    assert on_close.value is failure
    assert parts.store.commits == [[session.id]]  # nothing more was sent


# -- Redis failures -------------------------------------------------------------------------------
async def test_a_redis_failure_is_retried_and_the_commit_succeeds_without_losing_or_duplicating_an_event(
    parts: Parts,
) -> None:
    session = parts.session()
    parts.store.failures.append(RedisConnectionError("Connection refused"))
    for n in range(3):
        content(parts.writer, session, str(n))
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)

    assert parts.store.attempts == 2
    assert parts.store.commits == [[session.id]]
    assert parts.writer.rounds == 1
    assert parts.store.seqs(session.id) == [1, 2, 3]
    assert seqs_in_replay(parts.replay, session) == [1, 2, 3]
    assert parts.store.failures == []
    content(parts.writer, session, "after")  # the log is still open
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    assert parts.store.seqs(session.id) == [1, 2, 3, 4]


async def test_failures_beyond_the_retry_budget_fail_the_sessions_with_store_unavailable_caused_by_the_redis_error(
    parts: Parts,
) -> None:
    one, two = parts.session(), parts.session()
    errors = [RedisConnectionError(f"down {n}") for n in range(3)]  # the first try and two retries
    parts.store.failures.extend(errors)
    content(parts.writer, one, "1")
    content(parts.writer, two, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(StoreUnavailable) as first:
            await parts.writer.sync(one)
        with pytest.raises(StoreUnavailable) as second:
            await parts.writer.sync(two)

    assert first.value.__cause__ is errors[-1]
    assert second.value is first.value
    assert parts.store.attempts == 3 and parts.store.failures == []
    assert parts.store.commits == []
    assert seqs_in_replay(parts.replay, one) == [] and seqs_in_replay(parts.replay, two) == []
    with pytest.raises(StoreUnavailable) as later:
        content(parts.writer, one, "later")
    assert later.value is first.value


async def test_an_unexpected_store_error_is_not_reported_as_a_successful_commit(parts: Parts) -> None:
    session = parts.session()
    parts.store.failures.append(RuntimeError("a bug in the store"))
    content(parts.writer, session, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(Exception):
            await parts.writer.sync(session)
    assert parts.store.seqs(session.id) == []


# -- the end of a log -----------------------------------------------------------------------------
async def test_close_marks_the_end_after_everything_emitted(parts: Parts) -> None:
    session = parts.session()
    content(parts.writer, session, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.close(session)
    assert session.id in parts.store.ended
    assert parts.replay.after(session.id, 0) is not None
    assert parts.replay.after(session.id, 1) == ([], True)
    [[append]] = parts.store.appends
    assert append.end and append.last_seq == 1


async def test_close_during_an_in_flight_commit_does_not_end_the_replay_before_the_last_events(parts: Parts) -> None:
    """Regression: the end reached the replay cache with the first round, before the last event."""
    session = parts.session()
    gate = hold(parts.store)
    content(parts.writer, session, "1")
    await until(lambda: parts.store.attempts == 1)  # round 1 (event 1) in flight

    content(parts.writer, session, "2")
    # close() marks the end before round 1 is acknowledged: its first step runs before the flusher
    # wakes up, because both are scheduled in FIFO order (the task now, the wake-up by gate.set()).
    closing = asyncio.create_task(parts.writer.close(session))
    second_gate = hold(parts.store)  # round 2 waits at a gate of its own
    gate.set()
    await until(lambda: parts.store.attempts == 2)  # round 1 acknowledged, round 2 in flight

    # A follower reading after the first batch: the log has not ended, event 2 is still to come.
    assert replay_state(parts.replay, session, after=0) == ([1], False)
    assert replay_state(parts.replay, session, after=1) == ([], False)
    assert session.id not in parts.store.ended
    assert not closing.done()

    second_gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await closing
    assert replay_state(parts.replay, session, after=1) == ([2], True)
    assert replay_state(parts.replay, session, after=2) == ([], True)
    [one], [two] = parts.store.appends
    assert not one.end and [seq for seq, _ in one.frames] == [1]
    assert two.end and [seq for seq, _ in two.frames] == [2] and two.last_seq == 2


async def test_a_follower_of_a_session_closed_during_an_in_flight_commit_gets_every_event_before_the_end(
    parts: Parts,
) -> None:
    """The same regression, seen by a follower that reads the replay cache whenever the notifier wakes it."""
    session = parts.session()

    async def follow() -> list[int]:
        cursor, seen = 0, []
        while True:
            woken = parts.notifier.event(session.id)  # before the read, so no wake is lost
            frames, ended = replay_state(parts.replay, session, after=cursor)
            seen += frames
            cursor = frames[-1] if frames else cursor
            if ended and not frames:
                return seen
            if not frames:
                await woken.wait()

    gate = hold(parts.store)
    content(parts.writer, session, "1")
    await until(lambda: parts.store.attempts == 1)
    follower = asyncio.create_task(follow())
    content(parts.writer, session, "2")
    content(parts.writer, session, "3")
    closing = asyncio.create_task(parts.writer.close(session))  # runs before round 1 is acknowledged (FIFO)
    second_gate = hold(parts.store)
    gate.set()
    await until(lambda: parts.store.attempts == 2)
    await until(lambda: replay_state(parts.replay, session, after=0)[0] == [1])
    second_gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await closing
        assert await follower == [1, 2, 3]


# -- the plan in the snapshot ---------------------------------------------------------------------
async def test_the_plan_is_written_into_the_snapshot_only_when_it_changed(parts: Parts) -> None:
    session = parts.session()
    plan = a_plan()

    async def commit_one(text: str) -> dict[str, str]:
        content(parts.writer, session, text)
        async with asyncio.timeout(WAIT_SECONDS):
            await parts.writer.sync(session)
        return dict(parts.store.appends[-1][0].fields)

    assert F.PLAN not in await commit_one("before any plan")
    session.set_plan(plan)
    with_plan = await commit_one("planned")
    assert with_plan[F.PLAN] and with_plan[F.OUTCOMES] == "{}"
    assert F.PLAN not in (unchanged := await commit_one("same plan")) and F.OUTCOMES not in unchanged
    session.record_outcome("s1", "done: 3 mails")
    after_outcome = await commit_one("outcome")
    assert F.PLAN in after_outcome and '"s1":"done: 3 mails"' in after_outcome[F.OUTCOMES]
    assert F.PLAN not in await commit_one("nothing changed")
    assert parts.store.fields[session.id][F.PLAN] == after_outcome[F.PLAN]  # the stored plan stays


async def test_a_plan_changed_while_a_commit_is_in_flight_is_written_by_the_next_commit(parts: Parts) -> None:
    session = parts.session()
    session.set_plan(a_plan())
    gate = hold(parts.store)
    content(parts.writer, session, "1")
    await until(lambda: parts.store.attempts == 1)
    session.record_outcome("s1", "r1")  # after the first commit took its snapshot
    content(parts.writer, session, "2")
    gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    [one], [two] = parts.store.appends
    assert one.fields[F.OUTCOMES] == "{}"
    assert two.fields[F.OUTCOMES] == '{"s1":"r1"}'


async def test_an_adopted_session_continues_its_log_and_its_stored_plan_is_not_rewritten_until_it_changes(
    parts: Parts,
) -> None:
    driven_elsewhere = Session(new_session_id(), Principal("1", "1"), SessionRequest("hi", {}))
    SessionMachine().add(driven_elsewhere.model)
    driven_elsewhere.set_plan(a_plan())
    snapshot = driven_elsewhere.snapshot(4)
    adopted = Session.restore(snapshot)
    parts.machine.add(adopted.model, snapshot.state)
    parts.writer.open(adopted)

    assert content(parts.writer, adopted, "next") == 5
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(adopted)
    assert F.PLAN not in parts.store.appends[-1][0].fields  # it is in the hash already
    assert parts.replay.after(adopted.id, 3) is None  # before the resumed seq: Redis answers
    assert replay_state(parts.replay, adopted, after=4) == ([5], False)
    adopted.record_outcome("s1", "r")
    content(parts.writer, adopted, "after the outcome")
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(adopted)
    assert F.PLAN in parts.store.appends[-1][0].fields


# -- what the replay cache keeps ------------------------------------------------------------------
async def test_release_drops_the_session_from_the_replay_cache(parts: Parts) -> None:
    session = parts.session()
    content(parts.writer, session, "1")
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    parts.writer.release(session)
    assert parts.replay.after(session.id, 0) is None
    with pytest.raises(LeaseLost):
        content(parts.writer, session, "after release")


async def test_release_of_another_session_object_with_the_same_id_keeps_the_log(parts: Parts) -> None:
    session = parts.session()
    stranger = Session.restore(session.snapshot(0))
    parts.writer.release(stranger)
    assert parts.replay.after(session.id, 0) == ([], False)
    with pytest.raises(LeaseLost):
        content(parts.writer, stranger, "not its log")
    content(parts.writer, session, "still open")


async def test_idle_drops_the_frames_but_after_still_answers_for_later_seqs(parts: Parts) -> None:
    session = parts.session()
    for n in range(3):
        content(parts.writer, session, str(n))
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(session)
    parts.writer.idle(session)

    assert parts.replay.after(session.id, 0) is None  # those frames are read from Redis now
    assert parts.replay.after(session.id, 2) is None
    assert parts.replay.after(session.id, 3) == ([], False)
    content(parts.writer, session, "after the wait")
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.close(session)
    assert seqs_in_replay(parts.replay, session, after=3) == [4]
    assert parts.replay.after(session.id, 4) == ([], True)
    assert parts.store.seqs(session.id) == [1, 2, 3, 4]


# -- creating a session ---------------------------------------------------------------------------
def unopened_session(parts: Parts) -> Session:
    session = Session(new_session_id(), Principal("1", "1"), SessionRequest("새 세션", {"activeApp": "mail"}))
    parts.machine.add(session.model)
    return session


async def test_a_new_sessions_identity_rides_in_the_same_commit_as_other_sessions_events(parts: Parts) -> None:
    busy = parts.session()
    content(parts.writer, busy, "1")
    new = unopened_session(parts)
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.create(new, encode_identity(new.snapshot(0)), timeout=WAIT_SECONDS)
        await parts.writer.sync(busy)
    assert parts.store.commits == [[busy.id, new.id]]
    [_, created] = parts.store.appends[0]
    assert created.create and not created.end and list(created.frames) == []
    assert created.fields[F.TENANT_ID] == "1" and created.fields[F.PROMPT] == "새 세션"
    assert created.fields[F.STATE] == "planning" and created.fields[F.SEQ] == "0"

    assert content(parts.writer, new, "first") == 1
    async with asyncio.timeout(WAIT_SECONDS):
        await parts.writer.sync(new)
    [later] = parts.store.appends[1]
    assert not later.create and F.TENANT_ID not in later.fields
    assert seqs_in_replay(parts.replay, new) == [1]


async def test_a_creation_is_not_retried_when_redis_fails_but_the_other_sessions_events_are(parts: Parts) -> None:
    busy = parts.session()
    content(parts.writer, busy, "1")
    new = unopened_session(parts)
    error = RedisConnectionError("Connection reset by peer")
    parts.store.failures.append(error)
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(StoreUnavailable) as raised:
            await parts.writer.create(new, encode_identity(new.snapshot(0)), timeout=WAIT_SECONDS)
        await parts.writer.sync(busy)
    assert raised.value.__cause__ is error
    assert parts.store.commits == [[busy.id]]  # the retry carried the events only
    assert parts.store.seqs(busy.id) == [1] and new.id not in parts.store.fields


async def test_a_creation_slower_than_its_timeout_fails_with_store_unavailable(parts: Parts) -> None:
    new = unopened_session(parts)
    gate = hold(parts.store)
    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(StoreUnavailable) as raised:
            await parts.writer.create(new, encode_identity(new.snapshot(0)), timeout=0.05)
    assert isinstance(raised.value.__cause__, TimeoutError)
    with pytest.raises(StoreUnavailable) as later:
        content(parts.writer, new, "too late")
    assert later.value is raised.value
    gate.set()
    await until(lambda: parts.store.commits == [[new.id]])  # let the held round end
