"""The agreed state: SQLite on disk, signature hashes in memory, both always telling the same."""

from __future__ import annotations

import os
import sqlite3

from filesim.sync import names
from filesim.sync.state import SCHEMA_VERSION, State, agreed_entry
from filesim.sync.tree import Kind, Sig, Tree, sig_hash


def _agree(state: State, nfs: Tree, windows: Tree, path: str, win: str | None = None) -> None:
    """Record what the two real trees hold at ``path`` as agreed."""
    win = win or path
    nfs_sig, win_sig = nfs.stat(path), windows.stat(win)
    assert nfs_sig is not None and win_sig is not None
    state.put(path, agreed_entry(win, nfs_sig, win_sig, None if nfs_sig.is_dir else "ab" * 32,
                                 by_agent=True))


def _trees(tmp_path, *paths: str) -> tuple[Tree, Tree]:
    trees = []
    for side in ("nfs", "windows"):
        root = tmp_path / side
        root.mkdir()
        for path in paths:
            target = root / path
            if path.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.encode())
        trees.append(Tree(root, side, windows=side == "windows"))
    return trees[0], trees[1]


def test_a_poll_of_unchanged_trees_reports_nothing_and_an_edit_on_either_side(tmp_path):
    nfs, windows = _trees(tmp_path, "d/", "d/a.txt", "d/b.txt", "top.txt")
    state = State(tmp_path / "state")
    for path in ("d", "d/a.txt", "d/b.txt", "top.txt"):
        _agree(state, nfs, windows, path)

    for tree, agreed, known in ((nfs, state.nfs_hash, state.paths),
                                (windows, state.win_hash, state.win_names)):
        assert tree.poll(agreed, len(state), known).changed == {}
    (tmp_path / "windows" / "d" / "a.txt").write_bytes(b"edited, longer")
    (tmp_path / "nfs" / "top.txt").unlink()
    assert set(windows.poll(state.win_hash, len(state), state.win_names).changed) == {"d/a.txt"}
    assert nfs.poll(state.nfs_hash, len(state), state.paths).deleted == {"top.txt"}


def test_a_folder_renamed_while_a_poll_walks_is_seen_under_both_names(tmp_path):
    files = [f"batch/f{i}.dat" for i in range(5)]
    nfs, windows = _trees(tmp_path, "batch/", *files)
    state = State(tmp_path / "state")
    for path in ("batch", *files):
        _agree(state, nfs, windows, path)
    looked_at: list[str] = []

    def agreed(path: str) -> int | None:
        if not looked_at:  # the tester renames the folder just as the walk reached it
            (tmp_path / "windows" / "batch").rename(tmp_path / "windows" / "batch-2026")
        looked_at.append(path)
        return state.win_hash(path)

    found = windows.poll(agreed, len(state), state.win_names)

    # Both names in one poll: the agent can pair them as a rename (not copy and hold deletions).
    assert set(found.changed) == {"batch-2026", *(f.replace("batch", "batch-2026") for f in files)}
    assert found.deleted == {"batch", *files}


def test_entries_survive_a_restart_with_names_that_are_not_utf8_and_other_windows_names(tmp_path):
    raw = os.fsdecode(b"legacy-\xe9t\xe9.txt")
    win = names.encode(raw)
    assert win != raw
    nfs, windows = _trees(tmp_path, "x/", "x/a.txt")
    state = State(tmp_path / "state")
    _agree(state, nfs, windows, "x")
    _agree(state, nfs, windows, "x/a.txt")
    entry = agreed_entry(win, Sig(Kind.FILE, 3, 10**18, 7, 10**18, True),
                         Sig(Kind.FILE, 3, 10**18, 0, 0, True), "cd" * 32, by_agent=False)
    state.put(raw, entry)
    state.set_meta("share_id", "share-1")
    state.close()

    again = State(tmp_path / "state")
    assert again.get(raw) == entry
    assert again.path_of_win(win) == raw
    assert again.win_hash(win) == sig_hash(entry.win_sig())
    assert again.win_hash(raw) is None  # the NFS name is not a Windows name of it
    assert again.nfs_hash(raw) == sig_hash(entry.nfs_sig())
    assert again.files() == 2 and again.is_dir("x") and not again.is_dir("x/a.txt")
    assert again.meta["share_id"] == "share-1"


def test_uncommitted_changes_are_seen_by_every_question(tmp_path):
    state = State(tmp_path / "state")
    state.use_case_insensitive(True)
    folder = agreed_entry("Dir", Sig(Kind.DIR, 0, 0, 5, 0, False), Sig(Kind.DIR, 0, 0, 0, 0, False),
                          None, by_agent=False)
    file = agreed_entry("Dir/Report.XLSX", Sig(Kind.FILE, 1, 2, 3, 4, False),
                        Sig(Kind.FILE, 1, 2, 0, 0, False), "ef" * 32, by_agent=False)
    state.put("Dir", folder)
    state.put("Dir/Report.XLSX", file)
    assert state.path_of_win("dir/report.xlsx") == "Dir/Report.XLSX"  # pending
    assert state.under("Dir") == ["Dir/Report.XLSX"]
    state.commit()
    assert state.path_of_win("DIR/REPORT.xlsx") == "Dir/Report.XLSX"  # committed
    state.drop("Dir/Report.XLSX")
    assert state.get("Dir/Report.XLSX") is None
    assert state.path_of_win("dir/report.xlsx") is None
    assert state.under("Dir") == [] and state.files() == 0


def test_under_a_folder_is_exactly_its_descendants(tmp_path):
    state = State(tmp_path / "state")
    folder = agreed_entry("", Sig(Kind.DIR, 0, 0, 1, 0, False), Sig(Kind.DIR, 0, 0, 0, 0, False),
                          None, by_agent=False)
    for path in ("a", "a/b", "a/b/c", "a/b-x", "a/bc", "a/b/c/d", "a0", "b"):
        state.put(path, folder._replace(win=path))
    assert state.under("a/b") == ["a/b/c", "a/b/c/d"]
    assert state.under("a") == ["a/b", "a/b-x", "a/b/c", "a/b/c/d", "a/bc"]


def test_a_state_from_an_older_agent_starts_over_and_keeps_the_share_identity(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.sqlite3")
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema', '2'), ('share_id', 'kept');"
                     "CREATE TABLE agreed (path BLOB PRIMARY KEY, win TEXT);"
                     "INSERT INTO agreed VALUES (x'61', 'a');")
    db.commit()
    db.close()
    state = State(folder)
    assert len(state) == 0 and state.meta == {"schema": SCHEMA_VERSION, "share_id": "kept"}


def test_within_a_batch_every_read_sees_the_latest_put_drop_and_commit(tmp_path):
    state = State(tmp_path / "state")

    def version(size: int):
        return agreed_entry("a.txt", Sig(Kind.FILE, size, 2, 3, 4, False),
                            Sig(Kind.FILE, size, 2, 0, 0, False), "ab" * 32, by_agent=True)

    state.put("a.txt", version(1))
    state.commit()
    with state.batch():
        assert state.get("a.txt") == version(1)  # read back from SQLite, kept
        state.put("a.txt", version(2))
        assert state.get("a.txt") == version(2)
        state.commit()
        assert state.get("a.txt") == version(2)
        state.drop("a.txt")
        state.commit()
        assert state.get("a.txt") is None
        state.put("a.txt", version(3))
        state.commit()
        assert state.get("a.txt") == version(3)
    assert State(tmp_path / "state").get("a.txt") == version(3)
