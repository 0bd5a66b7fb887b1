"""The served definition (the console's diagram) is the live machine's: every move it lists, the machine makes."""

from __future__ import annotations

import json

import pytest

from statemachines import FINAL_STATES, TRANSITIONS, SessionModel, State, Trigger, describe, new_session_machine

pytestmark = pytest.mark.anyio


def test_every_state_once_with_the_final_ones_marked() -> None:
    states = describe()["states"]
    assert [state["name"] for state in states] == [state.value for state in State]
    assert {state["name"] for state in states if state["final"]} == {state.value for state in FINAL_STATES}


def test_the_initial_state_is_where_a_new_session_starts() -> None:
    model = SessionModel()
    new_session_machine().add(model)
    assert describe()["initial"] == model.state == State.PLANNING.value


def test_every_transition_with_its_sources_and_guards_in_definition_order() -> None:
    described = describe()["transitions"]
    assert [t["trigger"] for t in described] == [t["trigger"] for t in TRANSITIONS]
    by_trigger = {t["trigger"]: t for t in described}
    assert by_trigger["cancel"]["sources"] == ["planning", "executing", "awaiting_approval"]
    assert by_trigger["approve"] == {
        "trigger": "approve", "sources": ["awaiting_approval"], "dest": "executing",
        "conditions": ["matches_pending_request"],
    }
    assert by_trigger["time_out"]["conditions"] == []


async def test_the_live_machine_makes_every_listed_move() -> None:
    machine = new_session_machine()
    for transition in describe()["transitions"]:
        for source in transition["sources"]:
            model = SessionModel()
            machine.add(model, State(source))
            model.begin_approval("req_1")  # satisfies has_pending_request and matches_pending_request
            moved = await model.fire(Trigger(transition["trigger"]), request_id="req_1")
            assert moved and model.state == transition["dest"], (transition, source)
            machine.remove(model)


async def test_the_machine_refuses_what_is_not_listed() -> None:
    listed = {(t["trigger"], source) for t in describe()["transitions"] for source in t["sources"]}
    machine = new_session_machine()
    for trigger in Trigger:
        for state in State:
            if (trigger.value, state.value) in listed:
                continue
            model = SessionModel()
            machine.add(model, state)
            model.begin_approval("req_1")
            assert not await model.fire(trigger, request_id="req_1"), (trigger, state)
            machine.remove(model)


def test_it_is_plain_json() -> None:
    assert json.loads(json.dumps(describe())) == describe()
