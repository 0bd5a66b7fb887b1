"""Waking followers: one one-shot wake-up per waited-on session, shared by its followers; drain wakes
all for good.

Written against the survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

import asyncio

import pytest

from aura.session.notifier import Notifier, Wakeup

pytestmark = pytest.mark.anyio


def test_a_new_notifier_is_not_draining() -> None:
    assert Notifier().draining is False


def test_followers_of_one_session_share_one_event_and_other_sessions_have_their_own() -> None:
    notifier = Notifier()
    first = notifier.event("sess_a")
    assert notifier.event("sess_a") is first
    assert notifier.event("sess_b") is not first


def test_wake_sets_the_event_and_the_next_wait_gets_a_fresh_one() -> None:
    notifier = Notifier()
    waited = notifier.event("sess_a")
    other = notifier.event("sess_b")
    notifier.wake("sess_a")
    assert waited.is_set()
    assert not other.is_set()
    fresh = notifier.event("sess_a")
    assert fresh is not waited and not fresh.is_set()


def test_waking_a_session_nobody_waits_on_is_a_no_op() -> None:
    notifier = Notifier()
    notifier.wake("sess_a")
    assert not notifier.event("sess_a").is_set()


async def test_drain_wakes_every_follower_and_stays_draining() -> None:
    notifier = Notifier()
    events = [notifier.event(f"sess_{i}") for i in range(3)]
    woken = asyncio.gather(*(asyncio.wait_for(event.wait(), 5) for event in events))
    notifier.drain()
    await woken
    assert notifier.draining is True
    assert all(event.is_set() for event in events)
    assert not notifier.event("sess_0").is_set()  # forgotten: a later follower gets a new event


# -- the wake-up itself -----------------------------------------------------------------------------
async def test_a_wakeup_releases_every_follower_once_set_and_counts_those_waiting() -> None:
    wakeup = Wakeup()
    assert wakeup.is_set() is False and wakeup.waiting == 0
    followers = [asyncio.create_task(wakeup.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert wakeup.waiting == 3
    assert not any(task.done() for task in followers)
    wakeup.set()
    await asyncio.wait_for(asyncio.gather(*followers), 5)
    assert wakeup.is_set() and wakeup.waiting == 0
    await asyncio.wait_for(wakeup.wait(), 5)  # set: returns at once
    assert wakeup.waiting == 0
    wakeup.set()  # setting twice is harmless


async def test_a_wakeup_set_before_anybody_waits_is_not_missed() -> None:
    wakeup = Wakeup()
    wakeup.set()
    await asyncio.wait_for(wakeup.wait(), 5)
    assert wakeup.waiting == 0


async def test_one_follower_giving_up_does_not_cancel_the_wakeup_of_the_others() -> None:
    wakeup = Wakeup()
    patient = asyncio.create_task(wakeup.wait())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wakeup.wait(), 0.01)
    await asyncio.sleep(0)
    assert wakeup.waiting == 1 and not patient.done()
    wakeup.set()
    await asyncio.wait_for(patient, 5)
    assert wakeup.waiting == 0


async def test_followers_waiting_and_current_only_look() -> None:
    notifier = Notifier()
    assert notifier.current("sess_a") is None
    assert notifier.followers_waiting("sess_a") == 0
    assert notifier.current("sess_a") is None  # looking made none
    wakeup = notifier.event("sess_a")
    assert notifier.current("sess_a") is wakeup
    followers = [asyncio.create_task(wakeup.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert notifier.followers_waiting("sess_a") == 2
    assert notifier.followers_waiting("sess_b") == 0
    notifier.wake("sess_a")
    await asyncio.wait_for(asyncio.gather(*followers), 5)
    assert notifier.current("sess_a") is None
    assert notifier.followers_waiting("sess_a") == 0
