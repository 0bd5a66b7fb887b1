"""The session machine's definition as plain data, for a client to draw (the console's diagram).

Built from the same ``STATES`` and ``TRANSITIONS`` as the live machine and the mermaid diagram,
so a drawing made from it cannot drift from what sessions do.
"""

from __future__ import annotations

from typing import Any

from statemachines.session import STATES, TRANSITIONS, State


def _names(value: Any) -> list[str]:
    """A transitions field that is one name or a list of names, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def describe() -> dict[str, Any]:
    """``{"initial", "states": [{"name", "final"}], "transitions": [{"trigger", "sources", "dest", "conditions"}]}``.

    JSON-ready; the order of ``STATES`` and ``TRANSITIONS`` is kept (a drawing may rely on it).
    """
    return {
        "initial": State.PLANNING.value,
        "states": [{"name": state["name"], "final": bool(state.get("final", False))} for state in STATES],
        "transitions": [
            {
                "trigger": transition["trigger"],
                "sources": _names(transition["source"]),
                "dest": transition["dest"],
                "conditions": _names(transition.get("conditions")),
            }
            for transition in TRANSITIONS
        ],
    }
