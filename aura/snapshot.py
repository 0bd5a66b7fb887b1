"""The snapshot of a session as stored in its Redis hash (all values are strings)."""

from __future__ import annotations

import json
from typing import Any

from aura.planner import Plan, PlanStep

# Never shown to clients: the propagated bearer token.
_PRIVATE = frozenset({"authorization"})
_JSON_FIELDS = ("context", "plan", "outcomes")
_INT_FIELDS = ("seq", "step", "answeredChars")
_FLOAT_FIELDS = ("createdAt", "updatedAt", "approvalDeadline")


def plan_to_json(plan: Plan) -> str:
    return json.dumps(
        {
            "thought": plan.thought,
            "conversation": plan.conversation,
            "steps": [
                {
                    "id": s.id,
                    "title": s.title,
                    "description": s.description,
                    "tool": s.tool,
                    "params": s.params,
                    "confidence": s.confidence,
                    "callId": s.call_id,
                    "invalid": s.invalid,
                }
                for s in plan.steps
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def plan_from_json(text: str) -> Plan:
    body = json.loads(text)
    steps = [
        PlanStep(
            id=s["id"],
            title=s["title"],
            description=s["description"],
            tool=s.get("tool"),
            params=s.get("params") or {},
            confidence=float(s.get("confidence", 0.9)),
            call_id=s.get("callId"),
            invalid=s.get("invalid"),
        )
        for s in body["steps"]
    ]
    return Plan(thought=body["thought"], steps=steps, conversation=body.get("conversation") or [])


def public_view(fields: dict[str, str]) -> dict[str, Any]:
    """The snapshot as clients see it: typed values, no secrets, no chat transcript."""
    view: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _PRIVATE:
            continue
        if key in _JSON_FIELDS:
            view[key] = json.loads(value) if value else None
        elif key in _INT_FIELDS:
            view[key] = int(value) if value else 0
        elif key in _FLOAT_FIELDS:
            view[key] = float(value) if value else None
        else:
            view[key] = value or None
    if isinstance(view.get("plan"), dict):
        view["plan"].pop("conversation", None)
    view["cancelRequested"] = fields.get("cancelRequested") == "1"
    return view
