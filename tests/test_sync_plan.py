"""The decision table, without folders: every combination a path can show, in every mode (#23)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from filesim.sync.plan import (
    MODES,
    NFS,
    WINDOWS,
    Action,
    Change,
    Do,
    Facts,
    bidirectional_table,
    classify,
    decide,
)
from filesim.sync.state import agreed_entry
from filesim.sync.tree import Kind, Sig

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


W2N, N2W = Action(Do.COPY, WINDOWS, NFS), Action(Do.COPY, NFS, WINDOWS)
DEL_NFS, DEL_WIN = Action(Do.DELETE, dest=NFS), Action(Do.DELETE, dest=WINDOWS)
FORGET, KEEP_BOTH, DISOWN = Action(Do.FORGET), Action(Do.KEEP_BOTH), Action(Do.DISOWN)

#: (mode, NFS, Windows, expected, what else is known): the one-way modes' rows, as data.
ROWS = [
    ("to-nfs", U, C, W2N, {}), ("to-nfs", C, C, W2N, {}), ("to-nfs", D, C, W2N, {}),
    ("to-nfs", A, C, W2N, {"agreed": False}), ("to-nfs", C, U, W2N, {}),
    ("to-nfs", D, U, W2N, {}), ("to-nfs", U, D, DEL_NFS, {}), ("to-nfs", C, D, DEL_NFS, {}),
    ("to-nfs", C, A, DEL_NFS, {"agreed": False}), ("to-nfs", D, D, FORGET, {}),
    # to-windows: only the agent's own copy, untouched since, is replaced or deleted
    ("to-windows", C, U, N2W, {"by_agent": True}), ("to-windows", C, U, KEEP_BOTH, {}),
    ("to-windows", C, U, N2W, {"nfs_is_dir": True, "windows_is_dir": True}),
    ("to-windows", C, C, KEEP_BOTH, {"by_agent": True}),
    ("to-windows", C, C, N2W, {"nfs_is_dir": True, "windows_is_dir": True}),
    ("to-windows", C, A, N2W, {"agreed": False}), ("to-windows", C, D, N2W, {}),
    ("to-windows", U, D, N2W, {}), ("to-windows", C, C, KEEP_BOTH, {"agreed": False}),
    ("to-windows", U, C, DISOWN, {"by_agent": True}), ("to-windows", D, C, FORGET, {"by_agent": True}),
    ("to-windows", D, U, DEL_WIN, {"by_agent": True}), ("to-windows", D, U, FORGET, {}),
    ("to-windows", D, D, FORGET, {}), ("to-windows", A, C, FORGET, {"agreed": False}),
    ("to-windows", A, C, W2N, {"agreed": False, "seeding": True}),
    ("to-windows", D, U, DEL_WIN, {"by_agent": True, "seeding": True}),
]


@pytest.mark.parametrize(("mode", "n", "w", "expected", "known"), ROWS)
def test_each_row_of_the_one_way_modes(mode, n, w, expected, known):
    assert decide(mode, Facts(n, w, **{"agreed": True, **known})) == expected


def test_docs_design_shows_the_table_the_agent_uses():
    table = bidirectional_table()
    assert table.startswith("| NFS \\ Windows | unchanged | changed | deleted |\n|---|")
    assert table in DESIGN.read_text()


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


def test_classify_compares_each_side_with_its_own_agreed_signature():
    nfs = Sig(Kind.FILE, 10, 1_000, 7, 2_000, False)
    windows = Sig(Kind.FILE, 10, 1_000_000_000, 0, 0, False)
    entry = agreed_entry("a.txt", nfs, windows, "sha", by_agent=False)
    assert classify(nfs, entry, NFS) is U and classify(windows, entry, WINDOWS) is U
    assert classify(windows, entry, NFS) is C  # the other side's signature is not this one's
    assert classify(nfs._replace(ctime_ns=2_001), entry, NFS) is C  # an edit keeping size and mtime
    assert classify(windows._replace(size=11), entry, WINDOWS) is C
    assert classify(None, entry, NFS) is D and classify(None, None, WINDOWS) is A
    assert classify(nfs, None, NFS) is C  # new
    folder = Sig(Kind.DIR, 4096, 5, 9, 5, False)
    agreed_folder = agreed_entry("d", folder, folder, None, by_agent=False)
    assert classify(folder._replace(mtime_ns=6, ino=10), agreed_folder, NFS) is U  # its files tell
    assert classify(nfs, agreed_folder, NFS) is C  # a file where the folder was


def test_the_plan_imports_nothing_that_does_io_or_tells_time():
    import ast

    import filesim.sync.plan as plan

    tree = ast.parse(Path(plan.__file__).read_text())
    runtime = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = {alias.name for node in runtime if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in runtime if isinstance(node, ast.ImportFrom)}
    names = {n for n in names if not n.startswith("mutmut.")}  # `nox -s mutants` copies it
    assert names <= {"__future__", "dataclasses", "enum", "typing"}, names
