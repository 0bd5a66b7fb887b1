"""The runs of the sessions this process drives: one task each, owned by the process, not the request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aura.agent.runner import AgentRunner
from aura.session.registry import SessionRegistry
from aura.session.session import Session

log = logging.getLogger(__name__)


class RunSupervisor:
    def __init__(
        self, runner: AgentRunner, registry: SessionRegistry, *, on_new_session: Callable[[Session], None] | None = None
    ) -> None:
        self._runner = runner
        self._registry = registry
        self._on_new_session = on_new_session  # e.g. the AgentTask reporter
        self.on_stranded: Callable[[str], None] | None = None  # set by the composition root (the lease keeper)
        self._runs: dict[str, asyncio.Task[None]] = {}
        self.started = 0  # created or adopted here, since start-up

    def start(self, session: Session) -> asyncio.Task[None]:
        """Run ``session`` to a final state in a task of its own."""
        if self._on_new_session is not None and session.resumed_at_seq == 0:
            self._on_new_session(session)
        task = asyncio.create_task(self._runner.run(session), name=f"aura-session-{session.id}")
        self.started += 1
        self._runs[session.id] = task
        task.add_done_callback(lambda _: self._ended(session))
        return task

    def _ended(self, session: Session) -> None:
        self._runs.pop(session.id, None)
        if session.stranded and self.on_stranded is not None:
            self.on_stranded(session.id)

    def run_of(self, session_id: str) -> asyncio.Task[None] | None:
        return self._runs.get(session_id)

    def cancel_requested(self, session_id: str) -> None:
        """A cancel published for a session: act on it if this process drives it."""
        session = self._registry.local(session_id)
        task = self._runs.get(session_id)
        if session is None or task is None or session.model.is_final:
            return  # a session that already ended is not aborted after the fact
        session.cancel_requested = True
        task.cancel()

    def taken(self, session: Session) -> None:
        """Another instance drives ``session`` now: stop here without touching it."""
        session.detach()
        task = self._runs.get(session.id)
        if task is not None:
            task.cancel()
        else:
            self._registry.drop(session)

    async def drain(self, grace_seconds: float) -> None:
        """Stop every run without ending its session; wait up to ``grace_seconds`` for them."""
        for session in self._registry.all():
            session.detach()
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        if runs:
            log.info("draining %d session run(s)", len(runs))
            await asyncio.wait(runs, timeout=grace_seconds)
