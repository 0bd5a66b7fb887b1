"""Issue 10 items 1 and 8: what a session leaves in a real Redis once it ends, and for how long.

The end is one script call (the append with ``end``): it writes the end marker, drops the lease,
deletes from the snapshot what only a live run reads (the delegation, a token an older version
stored, the request's context, the plan's conversation) and gives the
log and the snapshot the finished TTL instead of the live one. Replays still work for that long.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from statemachines import SessionMachine, Trigger

from aura.auth import Delegation, Principal
from aura.ids import new_session_id
from aura.session.events import EventType
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.plan import Plan, PlanStep
from aura.session.replay import ReplayCache
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import F, LEGACY_AUTHORIZATION, decode, encode_identity, public_view
from aura.session.store import Append, SessionStore
from aura.storage import keys
from tests.support.auth import make_token
from tests.support.delegated_tokens import tokens_in
from tests.support.redis_server import close_pubsub

pytestmark = pytest.mark.anyio

LIVE_TTL, FINISHED_TTL = 1800, 120
BIG_CONTEXT = {"activeApp": "mail", "document": "문서" * 50_000}  # 300,000 UTF-8 bytes
CONVERSATION: list[dict[str, Any]] = [{"role": "user", "content": "x" * 20_000},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "mail"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "y" * 4000}]
PLAN = Plan("read then answer", [PlanStep("s1", "Read", "read mail", tool="mail", call_id="c1")], CONVERSATION)


def store_of(redis: Redis, instance: str, *, finished_ttl: int = FINISHED_TTL) -> SessionStore:
    return SessionStore(redis, instance, ttl_seconds=LIVE_TTL, max_events=1000, lease_seconds=30,
                        finished_ttl_seconds=finished_ttl)


class Replica:
    """One replica's writer over a real Redis, driving sessions by hand."""

    def __init__(self, redis: Redis, instance: str = "finish-a", *, finished_ttl: int = FINISHED_TTL) -> None:
        self.store = store_of(redis, instance, finished_ttl=finished_ttl)
        self.writer = LogWriter(self.store, Notifier(), ReplayCache(), redis_timeout_seconds=5)
        self.machine = SessionMachine()

    async def start(self, *, context: dict[str, object] | None = None) -> Session:
        delegation = Delegation({"sub": "1", "tenant_id": "1", "email": "kim@example.com"}, int(time.time()) + 3600)
        request = SessionRequest("read my mail", context if context is not None else BIG_CONTEXT, "agent-7", delegation)
        session = Session(new_session_id(), Principal("1", "1"), request)
        self.machine.add(session.model)
        await self.writer.create(session, encode_identity(session.snapshot(0)), timeout=5)
        assert await session.model.fire(Trigger.START_EXECUTION)
        session.set_plan(PLAN)
        self.writer.emit(session, EventType.THOUGHT, {"content": "reading"})
        session.record_outcome("s1", "3 mails")
        self.writer.emit(session, EventType.CONTENT, {"content": "You have 3 mails."})
        await self.writer.sync(session)
        return session

    async def finish(self, session: Session) -> None:
        assert await session.model.fire(Trigger.FINISH)
        self.writer.emit_all(session, session.take_transition_events())
        await self.writer.close(session)

    async def aclose(self) -> None:
        await self.writer.aclose()


async def test_a_finished_session_keeps_no_credential_and_expires_sooner(private_redis: Redis) -> None:
    replica = Replica(private_redis)
    session = await replica.start()
    live = await private_redis.hgetall(keys.snapshot(session.id))
    assert json.loads(live[F.DELEGATION])["claims"]["sub"] == "1"
    assert "conversation" in json.loads(live[F.PLAN]) and F.CONTEXT in live
    assert LIVE_TTL - 10 <= await private_redis.ttl(keys.snapshot(session.id)) <= LIVE_TTL
    assert LIVE_TTL - 10 <= await private_redis.ttl(keys.events(session.id)) <= LIVE_TTL

    await replica.finish(session)
    await replica.aclose()
    left = await replica.store.load(session.id)
    assert left is not None
    assert not {F.DELEGATION, LEGACY_AUTHORIZATION, F.CONTEXT} & set(left)
    assert "conversation" not in json.loads(left[F.PLAN])
    assert "kim@example.com" not in json.dumps(left)
    for key in (keys.snapshot(session.id), keys.events(session.id)):
        assert FINISHED_TTL - 10 <= await private_redis.ttl(key) <= FINISHED_TTL
    assert not await private_redis.exists(keys.lease(session.id), keys.followers(session.id))
    assert await tokens_in(private_redis) == []
    # What clients see stays valid: context reads as {}, every other field as it was.
    view = public_view(decode(left))
    assert view[F.CONTEXT] == {} and view[F.STATE] == "done" and view[F.AGENT_ID] == "agent-7"
    assert view[F.PLAN]["steps"][0]["id"] == "s1" and view[F.OUTCOMES] == {"s1": "3 mails"}
    assert view[F.SEQ] == 4
    # ... and the whole log still replays.
    page = await replica.store.read(session.id, 0)
    assert [seq for seq, _ in page.frames] == [1, 2, 3, 4] and page.ended


async def test_a_finished_snapshot_with_a_200_kb_context_is_under_4_kib(private_redis: Redis) -> None:
    replica = Replica(private_redis, "finish-size")
    session = await replica.start(context={"activeApp": "mail", "document": "x" * 200_000})
    before = await private_redis.memory_usage(keys.snapshot(session.id), samples=0)
    await replica.finish(session)
    await replica.aclose()
    after = await private_redis.memory_usage(keys.snapshot(session.id), samples=0)
    assert before is not None and before > 200_000
    assert after is not None and after < 4096, f"finished snapshot: {after} bytes (live: {before})"


async def test_a_token_an_older_version_stored_is_deleted_when_the_session_ends(private_redis: Redis) -> None:
    """A snapshot written before delegations holds the caller's "Bearer <jwt>" (issue 10 item 8)."""
    replica = Replica(private_redis, "finish-legacy")
    session = await replica.start(context={})
    token = make_token("1", "1")
    await private_redis.hset(keys.snapshot(session.id), LEGACY_AUTHORIZATION, f"Bearer {token}")
    assert await tokens_in(private_redis) != []
    await replica.finish(session)
    await replica.aclose()
    assert await private_redis.hget(keys.snapshot(session.id), LEGACY_AUTHORIZATION) is None
    assert await tokens_in(private_redis) == []


async def test_a_live_session_keeps_the_live_ttl_with_every_append(private_redis: Redis) -> None:
    replica = Replica(private_redis, "finish-live")
    session = await replica.start(context={})
    await private_redis.expire(keys.snapshot(session.id), 5)
    replica.writer.emit(session, EventType.CONTENT, {"content": "more"})
    await replica.writer.sync(session)
    await replica.aclose()
    for key in (keys.snapshot(session.id), keys.events(session.id), keys.lease(session.id)):
        assert LIVE_TTL - 10 <= await private_redis.ttl(key) <= LIVE_TTL


async def test_the_finished_ttl_is_never_longer_than_the_live_one(private_redis: Redis) -> None:
    replica = Replica(private_redis, "finish-long", finished_ttl=LIVE_TTL * 10)
    session = await replica.start(context={})
    await replica.finish(session)
    await replica.aclose()
    assert LIVE_TTL - 10 <= await private_redis.ttl(keys.snapshot(session.id)) <= LIVE_TTL


async def test_an_end_retried_after_its_reply_was_lost_keeps_the_trimmed_snapshot(private_redis: Redis) -> None:
    store = store_of(private_redis, "finish-retry")
    sid = new_session_id()
    await store.create(sid, {"sessionId": sid, "seq": "0", F.CONTEXT: "{}", F.DELEGATION: "{}"})
    end = Append(sid, [(1, "id: x.1\n\n")], {"seq": "1", "state": "done"}, 1, end=True, dropped=[F.CONTEXT, F.DELEGATION])
    assert await store.commit([end]) == [None]
    assert await store.commit([end]) == [None]  # the retry: answered as written, nothing rewritten
    assert await private_redis.hgetall(keys.snapshot(sid)) == {"sessionId": sid, "seq": "1", "state": "done"}
    entries = await private_redis.xrange(keys.events(sid)) or []
    assert [fields for _, fields in entries] == [{"f": "id: x.1\n\n"}, {"end": "1"}]


async def test_fields_to_drop_are_ignored_on_a_plain_append(private_redis: Redis) -> None:
    store = store_of(private_redis, "finish-plain")
    sid = new_session_id()
    await store.create(sid, {"sessionId": sid, "seq": "0", F.CONTEXT: "{}"})
    assert await store.commit([Append(sid, [], {"seq": "0"}, 0, dropped=[F.CONTEXT])]) == [None]
    assert await private_redis.hget(keys.snapshot(sid), F.CONTEXT) == "{}"


async def test_a_finished_session_followed_from_another_replica_is_published_once_and_unfollowed(
    private_redis: Redis,
) -> None:
    replica = Replica(private_redis, "finish-followed")
    session = await replica.start(context={})
    await replica.store.follow(session.id, 30)
    pubsub = private_redis.pubsub()
    await pubsub.subscribe(keys.events_channel(session.id))
    await pubsub.get_message(timeout=1)
    await replica.finish(session)
    await replica.aclose()
    message = await pubsub.get_message(timeout=2)
    assert message is not None and message["type"] == "message"
    assert not await private_redis.exists(keys.followers(session.id))
    await close_pubsub(pubsub)


async def test_a_cancel_requested_after_the_snapshot_expired_leaves_nothing_behind(private_redis: Redis) -> None:
    """HSET on a missing hash would create one without a TTL, which nothing would ever delete."""
    store = store_of(private_redis, "finish-cancel")
    sid = new_session_id()
    await store.request_cancel(sid)
    assert not await private_redis.exists(keys.snapshot(sid))
    assert await private_redis.ttl(keys.snapshot(sid)) == -2
