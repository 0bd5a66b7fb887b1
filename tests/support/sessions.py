"""Sessions driven in the test's own event loop, over a real Redis: the writer, registry and feeds."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from statemachines import SessionMachine

from aura.auth import Principal
from aura.metrics import Metrics
from aura.session.feed import SessionFeed
from aura.session.log_writer import LogWriter
from aura.session.notifier import Notifier
from aura.session.registry import SessionRegistry
from aura.session.replay import ReplayCache
from aura.session.session import Session, SessionRequest
from aura.session.store import SessionStore
from tests.support.memory import CountingQuotas


def store_for(redis: Redis, instance: str = "test-a", max_events: int = 10_000) -> SessionStore:
    return SessionStore(redis, instance, ttl_seconds=1800, max_events=max_events, lease_seconds=30)


@dataclass
class Driver:
    """What one replica has for its sessions: store, notifier, replay cache, the log writer, registry."""

    store: SessionStore
    notifier: Notifier = field(default_factory=Notifier)
    replay: ReplayCache = field(default_factory=ReplayCache)
    followed: FollowedLogs = field(default_factory=lambda: FollowedLogs())
    metrics: Metrics = field(default_factory=Metrics)  # the replica's own registry
    writer: LogWriter = field(init=False)
    registry: SessionRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.writer = LogWriter(self.store, self.notifier, self.replay, redis_timeout_seconds=5, metrics=self.metrics)
        self.registry = SessionRegistry(SessionMachine(), self.writer, CountingQuotas(), redis_timeout_seconds=5,
                                        metrics=self.metrics)
        self.metrics.observe_sessions(lambda: [session.state for session in self.registry.all()])

    async def create(self, prompt: str = "hi", owner: Principal = Principal("1", "1")) -> Session:
        return await self.registry.create(owner, SessionRequest(prompt, {}))

    def local_feed(self, session: Session) -> SessionFeed:
        """A follower on this replica: frames from the replay cache while it has them."""
        return SessionFeed(session.id, self.store, self.notifier, self.replay, self.followed,
                           redis_timeout_seconds=5, follow_seconds=30)

    def remote_feed(self, session: Session) -> SessionFeed:
        """A follower on another replica: nothing local, everything from Redis."""
        return SessionFeed(session.id, self.store, self.notifier, ReplayCache(), self.followed,
                           redis_timeout_seconds=5, follow_seconds=30)


@dataclass
class FollowedLogs:
    """The feeds' subscriptions without a hub: who follows which remote log, right now."""

    counts: dict[str, int] = field(default_factory=dict)

    async def follow(self, session_id: str) -> None:
        self.counts[session_id] = self.counts.get(session_id, 0) + 1

    def unfollow(self, session_id: str) -> None:
        self.counts[session_id] -= 1
        if not self.counts[session_id]:
            del self.counts[session_id]


def driver_for(redis: Redis, instance: str = "test-a", max_events: int = 10_000) -> Driver:
    return Driver(store_for(redis, instance, max_events))
