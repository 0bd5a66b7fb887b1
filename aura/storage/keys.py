"""Every Redis key and channel Aura reads or writes, in one place (docs/ARCHITECTURE.md, "Redis use").

The ``hitl:*`` names are main-service's (CONTRACT §4.2); the ``aura:*`` names are Aura's own.
Each name is a template filled with one id: ``keys.hitl_request(request_id)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

KeyOf = Callable[[str], str]  # id -> key or channel name

# -- main-service's HITL keys (CONTRACT §4.2) -------------------------------------------
HITL_CHANNEL_PREFIX: Final = "hitl:channel:"
HITL_CHANNEL_PATTERN: Final = HITL_CHANNEL_PREFIX + "*"
hitl_request: Final[KeyOf] = "hitl:request:{}".format  # the approval record, TTL 1800 s
hitl_session: Final[KeyOf] = "hitl:session:{}".format  # session id -> its request id, TTL 3600 s
hitl_signal: Final[KeyOf] = "hitl:signal:{}".format  # the decision, TTL 300 s
hitl_channel: Final[KeyOf] = (HITL_CHANNEL_PREFIX + "{}").format  # where the decision is published

# -- Aura's sessions -------------------------------------------------------------------
# Every key of one session carries the hash tag ``{sid}``, and every key of one instance
# ``{instanceId}``: on a Redis Cluster each group is in one slot, so a script may touch
# all of them at once. No script touches a key of two groups.
EVENTS_CHANNEL_PREFIX: Final = "aura:events:"
CANCEL_CHANNEL_PREFIX: Final = "aura:cancel:"
CANCEL_CHANNEL_PATTERN: Final = CANCEL_CHANNEL_PREFIX + "*"
snapshot: Final[KeyOf] = "aura:session:{{{}}}".format  # HASH, the snapshot
events: Final[KeyOf] = "aura:session:{{{}}}:events".format  # STREAM, one entry per event, ids 0-{seq}
lease: Final[KeyOf] = "aura:session:{{{}}}:lease".format  # STRING, the driving instance
# Set while a replica that does not drive the session follows it: only then is an append published.
followers: Final[KeyOf] = "aura:session:{{{}}}:followers".format
events_channel: Final[KeyOf] = "aura:events:{{{}}}".format  # "the log grew", subscribed to per session
cancel_channel: Final[KeyOf] = "aura:cancel:{{{}}}".format  # "cancel requested"

# -- Aura's instances ------------------------------------------------------------------
INSTANCES: Final = "aura:instances"  # SET of every instance that has sessions or a heartbeat
instance: Final[KeyOf] = "aura:instance:{{{}}}".format  # an instance's heartbeat
# SET of the sessions an instance drives: what a survivor adopts when the instance dies.
instance_sessions: Final[KeyOf] = "aura:instance:{{{}}}:sessions".format


def channel_session(prefix: str, channel: str) -> str:
    """The session id in ``prefix{sid}``: the inverse of :func:`events_channel` and :func:`cancel_channel`."""
    return channel[len(prefix) + 1 : -1]


# -- quotas (docs/SECURITY.md, limits) ---------------------------------------------------
# ZSETs of session ids scored by when their entry lapses (epoch ms). Every quota key of a tenant
# carries the tenant's hash tag ``{t:<tenantId>}``, so one script checks all of a session's limits.
tenant_live: Final[KeyOf] = "aura:quota:{{t:{}}}:live".format  # a tenant's live sessions
user_live: Final[Callable[[str, str], str]] = "aura:quota:{{t:{}}}:user:{}:live".format  # a user's live sessions
user_kept: Final[Callable[[str, str], str]] = "aura:quota:{{t:{}}}:user:{}:kept".format  # ... Redis still holds


# -- the built-in tools' data ------------------------------------------------------------
outbox: Final[KeyOf] = "aura:outbox:{}".format  # LIST, the tenant's outbox (send_email)
tasks: Final[KeyOf] = "aura:tasks:{}".format  # HASH, the tenant's tasks (list_open_tasks)
