"""The committed diagram is generated from the live definition, and the core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

from aura.cli import DIAGRAM_PATH, README_PATH, diagram_document, readme_with_diagram
from statemachines import TRANSITIONS, State, render_mermaid

ROOT = Path(__file__).resolve().parents[2]


def test_committed_diagram_is_up_to_date() -> None:
    committed = (ROOT / DIAGRAM_PATH).read_text(encoding="utf-8")
    assert committed == diagram_document(), "docs/statemachine.md is stale: run `make diagrams`"


def test_readme_diagram_is_up_to_date() -> None:
    readme = (ROOT / README_PATH).read_text(encoding="utf-8")
    assert readme == readme_with_diagram(readme), "README.md's diagram is stale: run `make diagrams`"
    assert render_mermaid() in readme


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
