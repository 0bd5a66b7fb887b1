"""Render the session machine as a mermaid ``stateDiagram-v2``.

The diagram is built on a throwaway ``GraphMachine`` from the same STATES and
TRANSITIONS as the live machine; live sessions never use GraphMachine because it
keeps a graph per model.
"""

from __future__ import annotations

from transitions.extensions import GraphMachine

from statemachines.session import STATES, TRANSITIONS, State


class _DiagramModel:
    pass


def render_mermaid() -> str:
    """Return the diagram as mermaid source (no highlighting of a current state)."""
    machine = GraphMachine(
        model=None,
        states=[dict(state) for state in STATES],  # transitions writes into the dicts it is given
        transitions=TRANSITIONS,
        initial=State.PLANNING.value,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="Aura agent session",
    )
    model = _DiagramModel()
    machine.add_model(model)
    source: str = model.get_graph().source  # type: ignore[attr-defined]
    # Styling lines highlight the throwaway model's current state; the diagram
    # documents the definition, not a session, so they are dropped.
    lines = [
        line.rstrip()
        for line in source.splitlines()
        if not line.strip().startswith(("classDef ", "Class "))
    ]
    while lines and not lines[-1]:
        lines.pop()
    # transitions writes the title as a bare YAML scalar; mermaid's front matter wants `title:`.
    if lines[:1] == ["---"] and not lines[1].startswith("title:"):
        lines[1] = f"title: {lines[1]}"
    lines += [f"  {state['name']} --> [*]" for state in STATES if state.get("final")]
    return "\n".join(lines) + "\n"
