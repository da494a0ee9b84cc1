"""The mass-deletion guard's rules as a table, without folders (guard.py is pure)."""

from __future__ import annotations

import pytest

from filesim.sync.guard import DeletionGuard


def names(n: int, prefix: str = "f") -> set[str]:
    return {f"{prefix}{i:04}" for i in range(n)}


# (what happens before, then the batch: files, tracked, waiting, source empty) → held count, why
RULES = [
    ("fewer than ten are never held, even emptying a side", [], (names(9), 9, 0, True), 0, ""),
    ("a side emptied holds ten", [], (names(10), 10, 0, True), 10, "the windows side is empty"),
    ("half or less goes through", [], (names(50), 100, 0, False), 0, ""),
    ("more than half is held", [], (names(51), 100, 0, False), 51, "51 of 100 files"),
    ("deletions waiting for their second look count", [], (names(30), 100, 25, False), 30,
     "55 of 100 files"),
    ("more than the rate within the window is held below the fraction", [],
     (names(101), 1000, 0, False), 101, "101 files would be deleted within 10s"),
    ("a burst arriving in pieces is one burst", [(0.0, names(40, "a"), 100), (5.0, names(15, "b"), 60)],
     (names(10, "c"), 45, 0, False), 10, "65 of 100 files"),
    ("a pause longer than the window starts a new burst", [(0.0, names(40, "a"), 100)],
     (names(10, "c"), 60, 0, False), 0, ""),
]


@pytest.mark.parametrize(("case", "before", "batch", "held", "why"), RULES, ids=[r[0] for r in RULES])
def test_rule(case, before, batch, held, why):
    guard = DeletionGuard(fraction=0.5, rate=100)
    for at, files, tracked in before:
        allowed, _, _ = guard.assess(at, files, tracked=tracked)
        guard.propagated(at, allowed)
    files, tracked, waiting, empty = batch
    now = 6.0 if before and before[-1][0] == 5.0 else 20.0 if before else 0.0
    allowed, kept, reason = guard.assess(now, files, tracked=tracked, waiting=waiting,
                                         source_empty=empty, source="windows")
    assert len(kept) == held and allowed == files - kept
    assert why in reason


def test_what_is_held_stays_held_whatever_comes_later():
    guard = DeletionGuard(fraction=0.5, rate=100)
    _, held, _ = guard.assess(0.0, names(20), tracked=30)
    assert len(held) == 20
    guard.note_created(100)  # the other side grew: 20 of 130 would be no mass deletion now
    for at in (1.0, 61.0, 200.0):  # retries, a flush, a later burst
        allowed, again, why = guard.assess(at, names(20), tracked=130)
        assert allowed == set() and again == names(20) and why
    assert guard.held == names(20)


def test_a_release_lets_exactly_the_held_ones_through_once_and_they_count_no_more():
    guard = DeletionGuard(fraction=0.5, rate=100)
    guard.assess(0.0, names(20), tracked=30)
    assert guard.release() == 20 and guard.held == set()
    allowed, held, _ = guard.assess(1.0, names(20), tracked=30)
    assert allowed == names(20) and held == set() and guard.released == set()
    guard.propagated(1.0, allowed)
    allowed, held, _ = guard.assess(2.0, names(3, "later"), tracked=10)
    assert allowed == names(3, "later") and held == set()  # judged on their own


def test_a_file_that_comes_back_is_no_longer_held():
    guard = DeletionGuard(fraction=0.5, rate=100)
    guard.assess(0.0, names(20), tracked=30)
    guard.forget("f0003")
    assert "f0003" not in guard.held and len(guard.held) == 19


def test_files_created_during_a_burst_are_counted_against_it():
    guard = DeletionGuard(fraction=0.5, rate=1000)
    allowed, _, _ = guard.assess(0.0, names(40, "a"), tracked=100)
    guard.propagated(0.0, allowed)
    guard.note_created(40)  # a system that writes as it deletes
    allowed, held, _ = guard.assess(5.0, names(40, "b"), tracked=100)
    assert held == set() and allowed == names(40, "b")


def test_the_burst_counts_across_batches_and_creations_add_up():
    """Deletions of several batches are one burst; so are creations noted one by one."""
    guard = DeletionGuard(fraction=0.5, rate=1000)
    for at, prefix in ((1000.0, "a"), (1001.0, "b"), (1002.0, "c")):
        allowed, held, _ = guard.assess(at, names(15, prefix), tracked=100)
        assert held == set()
        guard.propagated(at, allowed)
    allowed, held, why = guard.assess(1003.0, names(10, "d"), tracked=55)
    assert held == names(10, "d") and "55 of 100 files" in why  # 45 + 10 of 100
    for created, held_now in ((4, True), (5, False)):  # 45 - created + 10 of 100
        again = DeletionGuard(fraction=0.5, rate=1000)
        allowed, _, _ = again.assess(1000.0, names(45, "a"), tracked=100)
        again.propagated(1000.0, allowed)
        for _ in range(created):
            again.note_created()  # one file at a time
        _, held, _ = again.assess(1001.0, names(10, "d"), tracked=55)
        assert bool(held) is held_now


def test_the_rate_counts_what_went_within_the_window_and_what_waits():
    guard = DeletionGuard(fraction=1.0, rate=100)
    allowed, _, _ = guard.assess(1000.0, names(60, "a"), tracked=10_000)
    guard.propagated(1000.0, allowed)
    _, held, why = guard.assess(1005.0, names(20, "b"), tracked=10_000, waiting=21)
    assert held == names(20, "b") and "101 files would be deleted within 10s" in why
    fresh = DeletionGuard(fraction=1.0, rate=100)
    allowed, _, _ = fresh.assess(1000.0, names(60, "a"), tracked=10_000)
    fresh.propagated(1000.0, allowed)
    allowed, held, _ = fresh.assess(1010.0, names(60, "b"), tracked=10_000)
    assert held == set()  # a whole window later the first 60 count no more
    exactly = DeletionGuard(fraction=1.0, rate=100)
    allowed, held, _ = exactly.assess(1000.0, names(100), tracked=10_000)
    assert held == set() and allowed == names(100)  # the rate is a maximum, not a limit


def test_a_burst_ends_only_after_a_whole_window_without_deletions():
    guard = DeletionGuard(fraction=0.5, rate=1000)
    allowed, _, _ = guard.assess(1000.0, names(40, "a"), tracked=100)
    guard.propagated(1000.0, allowed)
    _, held, _ = guard.assess(1010.0, names(20, "b"), tracked=60)  # exactly the window later
    assert held == names(20, "b")


def test_what_it_says_names_the_side_or_the_release():
    guard = DeletionGuard()
    assert guard.assess(0.0, set(), tracked=5) == (set(), set(), "")
    _, _, why = guard.assess(0.0, names(10), tracked=10, source_empty=True)
    assert why == "the side is empty"
    _, _, why = guard.assess(1.0, names(10), tracked=10)
    assert why == "held until `invoke release`"  # held before: no new reason
    _, _, why = DeletionGuard().assess(0.0, names(3), tracked=100)
    assert why == ""


def test_new_deletions_beside_held_ones_go_through_and_the_held_stay_held():
    guard = DeletionGuard(fraction=0.5, rate=100)
    guard.assess(0.0, names(20, "a"), tracked=30)
    allowed, held, _ = guard.assess(100.0, names(20, "a") | {"small"}, tracked=130)
    assert allowed == {"small"} and held == names(20, "a")
    _, held, _ = guard.assess(200.0, names(12, "b"), tracked=12, source_empty=True)
    assert guard.held == names(20, "a") | names(12, "b")  # the earlier ones are still held
    guard.release()
    allowed, _, _ = guard.assess(300.0, names(20, "a") | {"other"}, tracked=200)
    assert allowed == names(20, "a") | {"other"}  # released ones and new ones alike


def test_a_released_file_that_comes_back_is_held_again_next_time():
    guard = DeletionGuard(fraction=0.5, rate=100)
    guard.assess(0.0, names(20), tracked=30)
    guard.release()
    guard.forget("f0003")  # it came back: the release was for another deletion
    assert "f0003" not in guard.released and len(guard.released) == 19
