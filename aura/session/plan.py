"""A session's plan: the steps a planner chose, and what each step's tool returned."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PlanStep:
    id: str
    title: str
    description: str
    tool: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.9
    call_id: str | None = None  # the model's tool-call id, for the tool result message
    invalid: str | None = None  # why the planner's tool call cannot run (e.g. arguments not JSON)


@dataclass(frozen=True, slots=True)
class Plan:
    thought: str  # the planner's reasoning, sent as a `thought` event
    steps: Sequence[PlanStep]
    conversation: list[dict[str, Any]] = field(default_factory=list)  # chat messages so far (LLM planners)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step: PlanStep
    result: str | None  # the tool's result, None for a step without a tool
