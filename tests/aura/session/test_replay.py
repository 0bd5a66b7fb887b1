"""The frames a process keeps of the sessions it drives, for its local followers.

Written against the survivors of ``make mutate`` (docs/TESTING.md).
"""

from __future__ import annotations

from aura.session.replay import Frame, ReplayCache


def frames(*seqs: int) -> list[Frame]:
    return [(seq, f"frame {seq}".encode()) for seq in seqs]


def test_an_untracked_session_cannot_be_answered() -> None:
    cache = ReplayCache()
    cache.add("sess_a", frames(1))  # ignored: not tracked
    cache.end("sess_a")
    cache.forget_frames("sess_a")
    assert cache.after("sess_a", 0) is None


def test_frames_after_a_seq_and_whether_the_log_ended() -> None:
    cache = ReplayCache()
    cache.track("sess_a", 0)
    cache.add("sess_a", frames(1, 2))
    cache.add("sess_a", frames(3))
    assert cache.after("sess_a", 0) == (frames(1, 2, 3), False)
    assert cache.after("sess_a", 2) == (frames(3), False)
    assert cache.after("sess_a", 3) == ([], False)
    cache.end("sess_a")
    assert cache.after("sess_a", 1) == (frames(2, 3), True)


def test_an_adopted_session_answers_only_after_the_seq_it_was_adopted_at() -> None:
    cache = ReplayCache()
    cache.track("sess_a", 5)
    cache.add("sess_a", frames(6, 7))
    assert cache.after("sess_a", 4) is None  # seq 5 and before are only in Redis
    assert cache.after("sess_a", 5) == (frames(6, 7), False)
    assert cache.after("sess_a", 6) == (frames(7), False)


def test_forgetting_frames_moves_the_base_past_them() -> None:
    cache = ReplayCache()
    cache.track("sess_a", 0)
    cache.add("sess_a", frames(1, 2, 3))
    cache.forget_frames("sess_a")
    assert cache.after("sess_a", 2) is None
    assert cache.after("sess_a", 3) == ([], False)
    cache.add("sess_a", frames(4))
    assert cache.after("sess_a", 3) == (frames(4), False)
    cache.forget_frames("sess_a")
    cache.forget_frames("sess_a")  # nothing left to forget: the base stays
    assert cache.after("sess_a", 4) == ([], False)


def test_drop_forgets_the_session_and_dropping_twice_is_harmless() -> None:
    cache = ReplayCache()
    cache.track("sess_a", 0)
    cache.track("sess_b", 0)
    cache.add("sess_b", frames(1))
    cache.drop("sess_a")
    cache.drop("sess_a")
    cache.drop("sess_never_tracked")
    assert cache.after("sess_a", 0) is None
    assert cache.after("sess_b", 0) == (frames(1), False)
