"""Planners turn a prompt into steps; the default one is deterministic and offline.

The :class:`Planner` protocol is what the agent run depends on; an LLM planner
implements the same two calls.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from aura.session.plan import Plan, PlanStep, StepOutcome


class Planner(Protocol):
    async def plan(self, prompt: str, context: Mapping[str, Any]) -> Plan: ...

    def answer(self, prompt: str, plan: Plan, outcomes: Sequence[StepOutcome]) -> AsyncIterator[str]:
        """The final answer, as text chunks in order."""
        ...


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_EMAIL_WORDS = re.compile(r"e-?mail|\bmail\b|이메일|메일", re.IGNORECASE)
_TASK_WORDS = re.compile(r"\btasks?\b|to-?dos?|할\s*일|업무|태스크", re.IGNORECASE)
_SAYING = re.compile(r"\b(?:saying|that says|with the message|telling (?:them|him|her))\b[:,]?\s*(.+)$", re.IGNORECASE)
_SUBJECT_WORDS = 8


class RuleBasedPlanner:
    """Keyword rules: an email intent becomes ``send_email`` (needs approval), a task
    summary becomes ``list_open_tasks``, anything else a plain answer."""

    async def plan(self, prompt: str, context: Mapping[str, Any]) -> Plan:
        text = prompt.strip()
        if _EMAIL_WORDS.search(text):
            return self._email_plan(text)
        if _TASK_WORDS.search(text):
            return Plan(
                thought="The user wants a summary of today's open tasks; I will read the task list first.",
                steps=[
                    PlanStep("step-1", "Read open tasks", "Fetch today's open tasks for this tenant", "list_open_tasks", {"scope": "today"}),
                    PlanStep("step-2", "Summarize", "Summarize the open tasks for the user"),
                ],
            )
        return Plan(
            thought="The request needs no tool; I will answer directly.",
            steps=[PlanStep("step-1", "Answer", "Compose an answer to the request", confidence=0.6)],
        )

    def _email_plan(self, text: str) -> Plan:
        recipients = list(dict.fromkeys(_EMAIL.findall(text)))
        if not recipients:
            return Plan(
                thought="The user wants to send an email but named no recipient; I will ask for one.",
                steps=[PlanStep("step-1", "Ask for a recipient", "No email address was given", confidence=0.5)],
            )
        saying = _SAYING.search(text)
        body = saying.group(1).strip() if saying else text
        subject = " ".join(body.split()[:_SUBJECT_WORDS])
        params = {"to": ", ".join(recipients), "subject": subject, "body": body}
        return Plan(
            thought=f"The user wants to send an email to {params['to']}. Sending email needs approval.",
            steps=[
                PlanStep("step-1", "Draft the email", f"Draft an email to {params['to']}", confidence=0.85),
                PlanStep("step-2", "Send the email", f"Send the email to {params['to']}", "send_email", params, 0.8),
            ],
        )

    async def answer(self, prompt: str, plan: Plan, outcomes: Sequence[StepOutcome]) -> AsyncIterator[str]:
        results = [o for o in outcomes if o.result is not None]
        if results:
            for outcome in results:
                yield f"{outcome.step.title}: {outcome.result}"
            return
        if any(step.title == "Ask for a recipient" for step in plan.steps):
            yield "Who should receive the email? Please include an email address."
            return
        yield (
            "I can send emails (after your approval) and summarize your open tasks. "
            f"I have no tool for this request: {prompt.strip()}"
        )
