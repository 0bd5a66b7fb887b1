"""The committed diagrams are generated from the live definition, and the core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import graphviz
import pytest

from aura.cli import DIAGRAM_PATH, README_PATH, SVG_PATH, diagram_document, readme_with_diagram
from aura.statemachine_svg import render_svg
from statemachines import TRANSITIONS, State, render_dot, render_mermaid

ROOT = Path(__file__).resolve().parents[2]


def test_committed_diagram_is_up_to_date() -> None:
    committed = (ROOT / DIAGRAM_PATH).read_text(encoding="utf-8")
    assert committed == diagram_document(), "docs/statemachine.md is stale: run `make diagrams`"


def test_readme_diagram_is_up_to_date() -> None:
    readme = (ROOT / README_PATH).read_text(encoding="utf-8")
    assert readme == readme_with_diagram(readme), "README.md's diagram is stale: run `make diagrams`"
    assert render_mermaid() in readme


@pytest.mark.e2e  # runs Graphviz's dot
def test_committed_svg_is_up_to_date() -> None:
    committed = (ROOT / SVG_PATH).read_text(encoding="utf-8")
    try:
        fresh = render_svg()
    except graphviz.ExecutableNotFound:
        pytest.fail("Graphviz's dot is not installed: run `make system-deps` (apt-get install graphviz)")
    version = ".".join(map(str, graphviz.version()))
    assert committed == fresh, f"docs/statemachine.svg is stale: run `make diagrams` (this dot is Graphviz {version})"


def test_readme_shows_the_svg_beside_the_mermaid_diagram() -> None:
    readme = (ROOT / README_PATH).read_text(encoding="utf-8")
    after_mermaid = readme.split("<!-- diagram:end -->", 1)[1].lstrip()
    assert after_mermaid.startswith(f"![The session state machine, laid out by Graphviz]({SVG_PATH.as_posix()})")


def test_dot_source_has_every_state_and_transition_and_fixed_ids() -> None:
    source = render_dot()
    for state in State:
        assert f"\t{state.value} [label=" in source
    for transition in TRANSITIONS:
        assert transition["trigger"] in source
    assert 'id="state-\\N"' in source and 'id="edge-\\T-\\H"' in source  # no id left to Graphviz's counters
    assert "done [peripheries=2]" in source and "aborted [peripheries=2]" in source  # the final states
    assert "__initial__ -> planning" in source
    assert "darksalmon" not in source  # no state styled as the current one


def test_diagram_shows_every_state_and_transition() -> None:
    source = render_mermaid()
    assert source.splitlines()[3] == "stateDiagram-v2"
    for state in State:
        assert f'state "{state.value}" as {state.value}' in source
    for transition in TRANSITIONS:
        assert transition["trigger"] in source
    assert "done --> [*]" in source and "aborted --> [*]" in source
    assert "[*] --> planning" in source


def test_statemachines_never_imports_aura_or_io() -> None:
    forbidden = {"aura", "asyncio", "socket", "redis", "starlette", "httpx", "os", "pathlib"}
    for path in (ROOT / "statemachines").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
