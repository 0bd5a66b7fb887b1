"""The sessions this process drives, created here or adopted from a replica that went away."""

from __future__ import annotations

from statemachines import SessionMachine, State

from aura.auth import Principal
from aura.errors import TooManyRequests
from aura.ids import new_session_id
from aura.metrics import Metrics, unserved
from aura.session.log_writer import LogWriter
from aura.session.quotas import Quotas
from aura.session.session import Session, SessionRequest
from aura.session.snapshot import Snapshot, encode_identity


class SessionRegistry:
    def __init__(
        self,
        machine: SessionMachine,
        writer: LogWriter,
        quotas: Quotas,
        *,
        redis_timeout_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else unserved()
        self._machine = machine
        self._writer = writer
        self._quotas = quotas
        self._timeout = redis_timeout_seconds
        self._sessions: dict[str, Session] = {}

    async def create(self, owner: Principal, request: SessionRequest) -> Session:
        """A new session in `planning`, stored with its lease and counted against its owner's quotas in
        the same commit (TooManyRequests at a limit, StoreUnavailable if Redis is away)."""
        session = Session(new_session_id(), owner, request)
        self._track(session, None)  # local first: the adoption scan must never see it in Redis as nobody's
        try:
            await self._writer.create(session, encode_identity(session.snapshot(0)), timeout=self._timeout)
        except TooManyRequests:
            self.drop(session)  # the commit counted nothing for it
            raise
        except BaseException:
            self.drop(session)
            # A reply lost after Redis counted it: uncount it now rather than when its entries lapse.
            await self._quotas.forget(owner, session.id)
            raise
        self._metrics.session_started()
        return session

    def adopt(self, snapshot: Snapshot) -> Session:
        """Drive a session restored from its snapshot (the lease is already ours)."""
        session = Session.restore(snapshot)
        self._track(session, snapshot.state)
        self._writer.open(session)
        return session

    def _track(self, session: Session, state: State | None) -> None:
        session.on_transition = self._metrics.transition
        self._machine.add(session.model, state)
        self._sessions[session.id] = session

    def local(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def drop(self, session: Session) -> None:
        """Stop tracking a session here (it ended, or another instance drives it now)."""
        self._machine.remove(session.model)
        self._writer.release(session)
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
