"""Aura: the AI-agent runtime behind the DWP gateway.

The public surface, in the order a request meets it:

- :class:`Settings` (and :class:`StreamAuthPolicy`): the configuration, validated from one table;
- :func:`create_app`: the Starlette application over a :class:`Runtime`;
- :class:`Runtime`: one process's lifecycle, over the parts :func:`build` wires together;
- :class:`AuraError` and its subclasses: the one exception tree (see :mod:`aura.errors`).
"""

from aura.config import Settings, StreamAuthPolicy
from aura.errors import (
    ApiError,
    AuraError,
    ConfigError,
    LeaseLost,
    MalformedSignal,
    NotReplicated,
    PlannerError,
    StoreUnavailable,
    ToolError,
    TransitionRefused,
)
from aura.http import create_app
from aura.runtime import Runtime
from aura.wiring import Services, build

__all__ = [
    "ApiError",
    "AuraError",
    "ConfigError",
    "LeaseLost",
    "MalformedSignal",
    "NotReplicated",
    "PlannerError",
    "Runtime",
    "Services",
    "Settings",
    "StoreUnavailable",
    "StreamAuthPolicy",
    "ToolError",
    "TransitionRefused",
    "build",
    "create_app",
]
