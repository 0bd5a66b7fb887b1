"""The log writer after something went wrong: what it must not write, and what it retries."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from statemachines import SessionMachine

from aura.auth import Principal
from aura.errors import StoreUnavailable
from aura.ids import new_session_id
from aura.session.events import EventType
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.replay import ReplayCache
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import encode_identity
from tests.support.memory import MemoryLogStore

pytestmark = pytest.mark.anyio


def new_session() -> Session:
    session = Session(new_session_id(), Principal("1", "1"), SessionRequest("hi", {}))
    SessionMachine().add(session.model)
    return session


def writer_for(store: MemoryLogStore) -> LogWriter:
    return LogWriter(store, Notifier(), ReplayCache(), redis_timeout_seconds=5, retry_backoff=(0.01, 0.01, 0.01))


async def test_a_creation_its_client_gave_up_on_is_never_written() -> None:
    """Regression: the creation timed out (503 to the client) but the next round still created the
    session in Redis, leased to this instance, which then adopted and ran it."""
    store = MemoryLogStore(gate=asyncio.Event())
    writer = writer_for(store)
    busy = new_session()
    writer.open(busy)
    writer.emit(busy, EventType.CONTENT, {"content": "x"})
    held = asyncio.ensure_future(writer.sync(busy))  # a slow round is in flight
    await asyncio.sleep(0)
    late = new_session()
    with pytest.raises(StoreUnavailable):
        await writer.create(late, encode_identity(late.snapshot(0)), timeout=0.05)
    writer.release(late)  # what the registry does with a session it could not create
    assert store.gate is not None
    store.gate.set()
    async with asyncio.timeout(5):
        await held
        while writer._flusher is not None and not writer._flusher.done():
            await asyncio.sleep(0.01)
    assert late.id not in store.fields and all(late.id not in ids for ids in store.commits)


@pytest.mark.parametrize("refusal", [ReadOnlyError("READONLY You can't write against a read only replica."),
                                     OutOfMemoryError("OOM command not allowed")], ids=["readonly", "oom"])
async def test_a_call_refused_for_now_is_retried_and_nothing_is_lost(refusal: Exception) -> None:
    """After a failover the old primary answers READONLY; a full Redis, OOM: retried like a lost connection."""
    store = MemoryLogStore()
    writer = writer_for(store)
    session = new_session()
    writer.open(session)
    store.refusals[session.id] = [refusal, refusal]
    for n in range(3):
        writer.emit(session, EventType.CONTENT, {"content": str(n)})
    async with asyncio.timeout(5):
        await writer.sync(session)
    assert store.seqs(session.id) == [1, 2, 3]


async def test_a_call_refused_on_every_attempt_fails_the_session_with_the_refusal_as_cause() -> None:
    store = MemoryLogStore()
    writer = writer_for(store)
    session = new_session()
    writer.open(session)
    refusal = ReadOnlyError("READONLY")
    store.refusals[session.id] = [refusal] * 10
    writer.emit(session, EventType.CONTENT, {"content": "x"})
    with pytest.raises(StoreUnavailable) as raised:
        async with asyncio.timeout(5):
            await writer.sync(session)
    assert raised.value.__cause__ is refusal
