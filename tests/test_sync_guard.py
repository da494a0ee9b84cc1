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
