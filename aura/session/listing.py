"""A tenant's live sessions, as the console lists them (``GET /aura/sessions``).

The tenant's live set (aura.session.quotas) says which sessions are live; each one's state and
owner come from a few fields of its snapshot, never the whole hash (a plan or a context may be
large). Any user of the tenant sees the list, as any may decide its approvals (DECISIONS #41);
only the caller's own sessions show their prompt (DECISIONS #70).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from statemachines import FINAL_STATES, State

from aura.auth import Principal
from aura.session.quotas import SessionQuotas
from aura.session.snapshot import F
from aura.session.store import SessionStore
from aura.storage.calls import bounded

MAX_LISTED: Final = 50  # the newest ones; ``total`` says how many there are
PROMPT_CHARS: Final = 200  # of an own session's prompt: enough to tell one's sessions apart
_SUMMARY: Final = (F.TENANT_ID, F.USER_ID, F.STATE, F.CREATED_AT, F.UPDATED_AT, F.PENDING_REQUEST_ID)


@dataclass(frozen=True, slots=True)
class LiveSession:
    session_id: str
    user_id: str
    state: State
    created_at: float | None
    updated_at: float | None
    pending_request_id: str | None
    own: bool  # the caller's
    prompt: str | None  # own sessions only, clipped to PROMPT_CHARS


@dataclass(frozen=True, slots=True)
class Listing:
    sessions: list[LiveSession]
    total: int  # the tenant's live entries, listed or not
    limit: int


class LiveSessions:
    def __init__(self, quotas: SessionQuotas, store: SessionStore, *, redis_timeout_seconds: float) -> None:
        self._quotas = quotas
        self._store = store
        self._timeout = redis_timeout_seconds

    async def of_tenant(self, caller: Principal) -> Listing:
        """The caller's tenant's newest live sessions: at most three round trips, each bounded.

        A listed id whose snapshot is gone, has ended (its quota entry is released just after its
        end is written) or names another tenant is left out.
        """
        live = await self._quotas.live_in_tenant(caller.tenant_id, MAX_LISTED)
        summaries = await bounded(self._store.load_fields(live.session_ids, _SUMMARY), self._timeout, "list sessions")
        rows: list[tuple[str, State, dict[str, str]]] = []
        for sid, fields in zip(live.session_ids, summaries, strict=True):
            state = _state(fields)
            if fields is not None and state is not None and fields.get(F.TENANT_ID) == caller.tenant_id:
                rows.append((sid, state, fields))
        own = [sid for sid, _, fields in rows if fields.get(F.USER_ID) == caller.user_id]
        prompts = await bounded(self._store.load_fields(own, (F.PROMPT,)), self._timeout, "read prompts") if own else []
        prompt_of = {sid: (fields or {}).get(F.PROMPT, "")[:PROMPT_CHARS] for sid, fields in zip(own, prompts, strict=True)}
        sessions = [
            LiveSession(
                session_id=sid,
                user_id=fields.get(F.USER_ID, ""),
                state=state,
                created_at=_seconds(fields.get(F.CREATED_AT)),
                updated_at=_seconds(fields.get(F.UPDATED_AT)),
                # Only the owner's: with it, anyone of the tenant could find and read every pending action.
                pending_request_id=(fields.get(F.PENDING_REQUEST_ID) or None) if sid in prompt_of else None,
                own=sid in prompt_of,
                prompt=prompt_of.get(sid),
            )
            for sid, state, fields in rows
        ]
        return Listing(sessions, live.total, MAX_LISTED)


def _state(fields: dict[str, str] | None) -> State | None:
    """A live state, or None: gone, ended, or not a state at all."""
    try:
        state = State((fields or {}).get(F.STATE, ""))
    except ValueError:
        return None
    return None if state in FINAL_STATES else state


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
