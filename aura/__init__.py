"""Aura: the AI-agent runtime behind the DWP gateway.

Public surface: :func:`create_app`, :class:`Settings`, :class:`Runtime` and the
exception hierarchy in :mod:`aura.errors`.
"""

from aura.config import Settings, StreamAuthPolicy
from aura.errors import AuraError, ConfigError
from aura.http import create_app
from aura.runtime import Runtime

__all__ = ["AuraError", "ConfigError", "Runtime", "Settings", "StreamAuthPolicy", "create_app"]
