"""The pure session machine: moves, guards, final states and abort reasons."""

from __future__ import annotations

import pytest

from statemachines import AbortReason, SessionMachine, SessionModel, State, Transition, Trigger

pytestmark = pytest.mark.anyio


def new_model(seen: list[Transition] | None = None) -> tuple[SessionMachine, SessionModel]:
    machine = SessionMachine()
    model = SessionModel(listener=seen.append if seen is not None else None)
    machine.add(model)
    return machine, model


async def to_awaiting(model: SessionModel, request_id: str = "req_a") -> None:
    assert await model.fire(Trigger.START_EXECUTION)
    model.begin_approval(request_id)
    assert await model.fire(Trigger.REQUEST_APPROVAL)
    assert model.current is State.AWAITING_APPROVAL


def state_of(model: SessionModel) -> State:
    """``model.current`` read through a call: mypy would otherwise keep an earlier
    ``model.current is ...`` narrowing across the ``fire`` that changed the state."""
    return model.current


async def test_happy_path_reaches_done_and_reports_every_transition() -> None:
    seen: list[Transition] = []
    _, model = new_model(seen)
    assert model.current is State.PLANNING
    await to_awaiting(model)
    assert await model.fire(Trigger.APPROVE, request_id="req_a")
    assert await model.fire(Trigger.FINISH)
    assert state_of(model) is State.DONE and model.is_final
    assert [(t.source, t.dest, t.trigger) for t in seen] == [
        (State.PLANNING, State.EXECUTING, Trigger.START_EXECUTION),
        (State.EXECUTING, State.AWAITING_APPROVAL, Trigger.REQUEST_APPROVAL),
        (State.AWAITING_APPROVAL, State.EXECUTING, Trigger.APPROVE),
        (State.EXECUTING, State.DONE, Trigger.FINISH),
    ]
    assert model.pending_request_id is None


async def test_approve_only_with_the_pending_request_id() -> None:
    _, model = new_model()
    await to_awaiting(model, "req_right")
    assert not await model.fire(Trigger.APPROVE, request_id="req_wrong")
    assert not await model.fire(Trigger.APPROVE)
    assert not await model.fire(Trigger.REJECT, request_id="req_wrong")
    assert model.current is State.AWAITING_APPROVAL
    assert await model.fire(Trigger.APPROVE, request_id="req_right")


async def test_approve_outside_awaiting_approval_is_a_no_op() -> None:
    _, model = new_model()
    assert not await model.fire(Trigger.APPROVE, request_id="req_a")
    assert model.current is State.PLANNING
    assert await model.fire(Trigger.START_EXECUTION)
    assert not await model.fire(Trigger.APPROVE, request_id="req_a")
    assert state_of(model) is State.EXECUTING


async def test_request_approval_needs_a_pending_request() -> None:
    _, model = new_model()
    await model.fire(Trigger.START_EXECUTION)
    assert not await model.fire(Trigger.REQUEST_APPROVAL)
    assert model.current is State.EXECUTING


async def test_finish_only_from_executing() -> None:
    _, model = new_model()
    assert not await model.fire(Trigger.FINISH)
    await to_awaiting(model)
    assert not await model.fire(Trigger.FINISH)


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        (Trigger.REJECT, AbortReason.REJECTED),
        (Trigger.TIME_OUT, AbortReason.TIMEOUT),
        (Trigger.CANCEL, AbortReason.CANCELLED),
        (Trigger.FAIL, AbortReason.FAILED),
    ],
)
async def test_aborted_records_its_reason(trigger: Trigger, reason: AbortReason) -> None:
    _, model = new_model()
    await to_awaiting(model)
    assert await model.fire(trigger, request_id="req_a", detail="why")
    assert model.current is State.ABORTED
    assert model.abort_reason is reason
    assert model.abort_detail == "why"


@pytest.mark.parametrize("state_path", [[], [Trigger.START_EXECUTION]])
@pytest.mark.parametrize("trigger", [Trigger.CANCEL, Trigger.FAIL])
async def test_cancel_and_fail_from_every_live_state(state_path: list[Trigger], trigger: Trigger) -> None:
    _, model = new_model()
    for step in state_path:
        await model.fire(step)
    assert await model.fire(trigger)
    assert model.current is State.ABORTED


@pytest.mark.parametrize("final_trigger", [Trigger.FINISH, Trigger.CANCEL])
async def test_final_states_accept_no_trigger(final_trigger: Trigger) -> None:
    _, model = new_model()
    await model.fire(Trigger.START_EXECUTION)
    await model.fire(final_trigger)
    before = model.current
    for trigger in Trigger:
        assert not await model.fire(trigger, request_id="req_a")
    assert model.current is before


async def test_time_out_only_while_awaiting_approval() -> None:
    _, model = new_model()
    await model.fire(Trigger.START_EXECUTION)
    assert not await model.fire(Trigger.TIME_OUT)
    assert model.current is State.EXECUTING


async def test_models_are_distinct_by_identity_so_all_are_added() -> None:
    """transitions' add_model skips a model equal to one it has; ours compare by identity."""
    machine = SessionMachine()
    models = [SessionModel() for _ in range(50)]
    for model in models:
        machine.add(model)
    assert len(machine) == 50
    for model in models:
        machine.remove(model)
    assert len(machine) == 0


async def test_one_shared_machine_keeps_sessions_independent() -> None:
    machine = SessionMachine()
    a, b = SessionModel(), SessionModel()
    machine.add(a)
    machine.add(b)
    await a.fire(Trigger.START_EXECUTION)
    assert a.current is State.EXECUTING and b.current is State.PLANNING
    a.begin_approval("req_a")
    await a.fire(Trigger.REQUEST_APPROVAL)
    assert not await b.fire(Trigger.APPROVE, request_id="req_a")
    assert await a.fire(Trigger.APPROVE, request_id="req_a")


async def test_attached_models_carry_no_per_model_transitions_bindings() -> None:
    """transitions binds ~20 partials to each model by default (6 KiB per live session); ours has none."""
    machine = SessionMachine()
    model = SessionModel()
    machine.add(model)
    assert not [name for name in vars(model) if name.startswith(("may_", "is_", "to_")) or name in {t.value for t in Trigger}]
    assert await model.fire(Trigger.START_EXECUTION) and model.current is State.EXECUTING


async def test_a_detached_model_cannot_fire() -> None:
    with pytest.raises(RuntimeError):
        await SessionModel().fire(Trigger.START_EXECUTION)
