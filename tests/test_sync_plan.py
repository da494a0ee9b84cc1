"""The decision table, without folders: every combination a path can show, in every mode (#23)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from filesim.sync.plan import MODES, NFS, WINDOWS, Action, Change, Do, Facts, bidirectional_table, decide

U, C, D, A = Change.UNCHANGED, Change.CHANGED, Change.DELETED, Change.ABSENT
DESIGN = Path(__file__).parents[1] / "docs" / "design.md"


def every_fact() -> list[Facts]:
    """Every combination classify() can give, with what else the reconciler knows."""
    found = []
    for agreed, by_agent, seeding, nfs_dir, win_dir in itertools.product([False, True], repeat=5):
        changes = (U, C, D) if agreed else (A, C)
        for n, w in itertools.product(changes, repeat=2):
            if (n in (A, D) and nfs_dir) or (w in (A, D) and win_dir) or (by_agent and not agreed):
                continue
            found.append(Facts(n, w, agreed=agreed, nfs_is_dir=nfs_dir, windows_is_dir=win_dir,
                               by_agent=by_agent, seeding=seeding))
    return found


FACTS = every_fact()


def test_docs_design_shows_the_table_the_agent_uses():
    assert bidirectional_table() in DESIGN.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_nothing_changed_is_nothing_to_do(mode):
    for facts in FACTS:
        if facts.nfs in (U, A) and facts.windows in (U, A):
            assert decide(mode, facts) is None, facts


@pytest.mark.parametrize("mode", MODES)
def test_a_side_changed_by_a_user_is_never_deleted_or_overwritten(mode):
    """Only the agreed version is replaced or deleted; to-windows keeps a tester's file too."""
    for facts in FACTS:
        action = decide(mode, facts)
        if action is None or action.do not in (Do.COPY, Do.DELETE):
            continue
        dest_change = facts.nfs if action.dest == NFS else facts.windows
        if mode == "to-nfs" and action.dest == NFS:
            continue  # the export follows the Windows folder: NFS clients cannot write to it
        if dest_change is C:
            assert action.dest == WINDOWS and facts.windows_is_dir and facts.nfs_is_dir, facts
        if mode == "to-windows" and action.dest == WINDOWS and dest_change is U:
            assert facts.by_agent or (facts.windows_is_dir and facts.nfs_is_dir), facts


@pytest.mark.parametrize("mode", MODES)
def test_a_deletion_is_propagated_only_from_a_side_that_deleted(mode):
    for facts in FACTS:
        action = decide(mode, facts)
        if action is not None and action.do is Do.DELETE:
            source = facts.windows if action.dest == NFS else facts.nfs
            assert source is D or (mode == "to-nfs" and source is A and facts.agreed is False), facts


def test_bidirectional_edits_win_over_deletions_and_both_edits_merge():
    for facts in FACTS:
        action = decide("bidirectional", facts)
        if C in (facts.nfs, facts.windows) and D in (facts.nfs, facts.windows):
            assert action is not None and action.do is Do.COPY and action.note == "edit-wins"
        if facts.nfs is C and facts.windows is C:
            assert action == Action(Do.MERGE)


def test_one_way_modes_never_write_where_they_only_read():
    for facts in FACTS:
        to_nfs = decide("to-nfs", facts)
        assert to_nfs is None or to_nfs.dest != WINDOWS
        to_windows = decide("to-windows", facts)
        if to_windows is not None and to_windows.dest == NFS:
            assert facts.seeding and not facts.agreed  # the seed's first copy only


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        decide("both-ways", Facts(C, A, agreed=False))
