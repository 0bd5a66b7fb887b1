"""The session model's bookkeeping around its guards: the transition counter that ``fire``
answers from, the abort detail, the unattached model, and the machine's log silencing.

Written against the survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest

from statemachines import AbortReason, SessionMachine, SessionModel, State, Trigger
from statemachines.session import STATES

pytestmark = pytest.mark.anyio


def attached() -> SessionModel:
    model = SessionModel()
    SessionMachine().add(model)
    return model


def test_a_new_model_has_moved_zero_times_and_has_no_abort_detail() -> None:
    model = attached()
    assert model.transitions_done == 0
    assert model.abort_reason is None
    assert model.abort_detail is None
    assert model.pending_request_id is None


async def test_every_move_counts_exactly_once_and_a_refused_trigger_counts_nothing() -> None:
    model = attached()
    assert await model.fire(Trigger.START_EXECUTION)
    assert model.transitions_done == 1
    assert not await model.fire(Trigger.START_EXECUTION)  # not from executing
    assert model.transitions_done == 1
    model.begin_approval("req_a")
    assert await model.fire(Trigger.REQUEST_APPROVAL)
    assert await model.fire(Trigger.APPROVE, request_id="req_a")
    assert await model.fire(Trigger.FINISH)
    assert model.transitions_done == 4


async def test_an_unattached_model_says_so() -> None:
    with pytest.raises(RuntimeError) as caught:
        await SessionModel().fire(Trigger.START_EXECUTION)
    assert str(caught.value) == "the model is not attached to a SessionMachine"


async def test_a_text_detail_is_kept_with_the_abort() -> None:
    model = attached()
    assert await model.fire(Trigger.FAIL, detail="the planner failed")
    assert (model.current, model.abort_reason, model.abort_detail) == (
        State.ABORTED,
        AbortReason.FAILED,
        "the planner failed",
    )


async def test_a_detail_that_is_not_text_is_dropped() -> None:
    model = attached()
    # Callers are typed to pass str | None; the model still refuses to store anything else.
    assert await model.fire(Trigger.CANCEL, detail=cast(Any, 42))
    assert model.abort_reason is AbortReason.CANCELLED
    assert model.abort_detail is None


@pytest.fixture
def transitions_logger() -> Iterator[logging.Logger]:
    """transitions' logger with no level of its own; restored afterwards.

    mutmut forks its workers from a process that already built machines, so the level must be
    reset here for the test to see what building one does."""
    logger = logging.getLogger("transitions.core")
    root = logging.getLogger()
    saved, saved_root = logger.level, root.level
    logger.setLevel(logging.NOTSET)
    yield logger
    logger.setLevel(saved)
    root.setLevel(saved_root)


def test_building_the_machine_silences_transitions_skip_binding_warnings(transitions_logger: logging.Logger) -> None:
    root_level = logging.getLogger().level
    SessionMachine()
    assert transitions_logger.level == logging.ERROR
    assert logging.getLogger().level == root_level  # only transitions' logger, not everybody's


async def test_the_first_machine_of_a_process_ignores_illegal_triggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """transitions writes the machine's ``ignore_invalid_triggers`` into the STATES dicts it is given, so
    every later machine of the process takes it from there; without those keys, this machine is a first."""
    for state in STATES:
        monkeypatch.delitem(state, "ignore_invalid_triggers", raising=False)
    model = attached()
    assert not await model.fire(Trigger.APPROVE, request_id="req_a")  # no MachineError
    assert not await model.fire(Trigger.FINISH)
    assert model.current is State.PLANNING
