"""Render the session machine as a mermaid ``stateDiagram-v2`` and as Graphviz DOT source.

Both diagrams are built on a throwaway ``GraphMachine`` from the same STATES and
TRANSITIONS as the live machine; live sessions never use GraphMachine because it
keeps a graph per model. Laying the DOT source out (running Graphviz's ``dot``) is
I/O, so it happens in ``aura`` (:mod:`aura.statemachine_svg`), not here.
"""

from __future__ import annotations

from typing import Any, Literal

from transitions.extensions import GraphMachine

from statemachines.session import STATES, TRANSITIONS, State

TITLE = "Aura agent session"
# Graphviz sizes boxes from the measured text, and an unnamed font is whatever fontconfig picks for
# "Times" on that machine; a named one that `make system-deps` installs lays out the same everywhere.
DOT_FONT = "DejaVu Sans"
# The initial pseudo-state's node; no state may have this name (checked below).
DOT_INITIAL = "__initial__"


class _DiagramModel:
    pass


def _diagram_machine(graph_engine: Literal["graphviz", "mermaid"]) -> GraphMachine:
    return GraphMachine(
        model=None,
        states=[dict(state) for state in STATES],  # transitions writes into the dicts it is given
        transitions=TRANSITIONS,
        initial=State.PLANNING.value,
        auto_transitions=False,
        graph_engine=graph_engine,
        show_conditions=True,
        title=TITLE,
    )


def render_mermaid() -> str:
    """Return the diagram as mermaid source (no highlighting of a current state)."""
    machine = _diagram_machine("mermaid")
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


def render_dot() -> str:
    """Return the diagram as Graphviz DOT source (no current state highlighted), for ``dot -Tsvg``.

    Every SVG id is fixed here, so a page can find a state's box: ``state-<name>`` for a state,
    ``edge-<source>-<dest>`` for the arrow that carries every trigger between two states.
    """
    machine = _diagram_machine("graphviz")
    if not machine.graph_cls.__module__.endswith(".diagrams_graphviz"):
        # transitions falls back to mermaid, with only a log line, when the package is missing.
        raise RuntimeError("the Python package `graphviz` is not installed (it is in setup.cfg's install_requires)")
    if any(state["name"] == DOT_INITIAL for state in STATES):
        raise ValueError(f"no state may be named {DOT_INITIAL}: it is the initial marker's node")
    # A graph made straight from the machine has no model, so no state is styled as the current one.
    graph: Any = machine.graph_cls(machine).get_graph(title=TITLE)
    for attributes in (graph.graph_attr, graph.node_attr, graph.edge_attr):
        attributes["fontname"] = DOT_FONT
    graph.graph_attr["id"] = "session-machine"
    graph.node_attr["id"] = r"state-\N"  # \N, \T, \H: Graphviz fills in the node, tail and head names
    graph.edge_attr["id"] = r"edge-\T-\H"
    # What the mermaid diagram draws with [*]: final states get a double border, the start a dot.
    for state in STATES:
        if state.get("final"):
            graph.node(state["name"], peripheries="2")
    graph.node(DOT_INITIAL, label="", id="initial", shape="point", width="0.2", fillcolor="black")
    graph.edge(DOT_INITIAL, State.PLANNING.value, id=f"edge-initial-{State.PLANNING.value}")
    source: str = graph.source
    return source
