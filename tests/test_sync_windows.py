"""The Windows side's rules, against a share that behaves like NTFS behind 9p (issue #10).

Each numbered case of the issue is a test: case collisions, names Windows refuses, names that
are not UTF-8, edits that keep size and mtime, busy files, renames, types, permissions, holes.
The agent runs as a real process; the test plays the tester in ``share.backing`` and NFS
clients in the export folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from harness import cpu_seconds, tree_files, wait_until

from filesim.sync.versions import Versions

pytestmark = pytest.mark.ntfs

REFUSED_BY_WINDOWS = ["a:b.txt", "what?.txt", "aux.txt", "con", "trailing.", "trailing ", "\\",
                      '"', "|", "star*.log", "less<than>.csv"]


def copies(agent) -> list[dict]:
    return [e for e in agent.log_events() if e["event"] in ("copy", "delete", "rename")]


# -- 1. case collisions and case-only renames -------------------------------------------------

def test_nfs_names_differing_in_case_both_survive_and_nothing_flaps(share, nfs_dir, make_agent):
    (nfs_dir / "Report.csv").write_text("upper\n")
    (nfs_dir / "report.csv").write_text("lower\n")
    inodes = {n: (nfs_dir / n).stat().st_ino for n in ("Report.csv", "report.csv")}
    agent = make_agent().start()

    wait_until(lambda: len(tree_files(share.backing)) == 2)
    assert tree_files(share.backing) == {"Report.csv": b"upper\n", "report (case 2).csv": b"lower\n"}
    [notice] = wait_until(lambda: agent.status()["problems"])
    assert notice["path"] == "report.csv" and "report (case 2).csv" in notice["reason"]
    assert notice["blocks"] is False

    time.sleep(2)  # several polls: the NFS files stay as they are, nothing is recopied
    assert {n: (nfs_dir / n).stat().st_ino for n in inodes} == inodes
    assert len(copies(agent)) == 2

    (nfs_dir / "report.csv").write_text("lower, edited by the app\n")
    wait_until(lambda: (share.backing / "report (case 2).csv").read_text() == "lower, edited by the app\n")
    assert (share.backing / "Report.csv").read_text() == "upper\n"
    (share.backing / "report (case 2).csv").write_text("lower, edited by the tester\n")
    wait_until(lambda: (nfs_dir / "report.csv").read_text() == "lower, edited by the tester\n")
    assert (nfs_dir / "Report.csv").read_text() == "upper\n"


def test_a_case_only_rename_on_windows_renames_on_nfs_without_flapping(share, nfs_dir, make_agent):
    (share.backing / "data.txt").write_text("payload\n")
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / "data.txt").exists())
    inode = (nfs_dir / "data.txt").stat().st_ino

    (share.backing / "data.txt").rename(share.backing / "Data.txt")

    wait_until(lambda: os.listdir(nfs_dir) == ["Data.txt"])
    assert (nfs_dir / "Data.txt").stat().st_ino == inode
    time.sleep(1.5)
    assert os.listdir(nfs_dir) == ["Data.txt"] and os.listdir(share.backing).count("Data.txt") == 1
    assert [e["event"] for e in copies(agent)] == ["copy", "rename"]


def test_a_case_only_rename_on_nfs_renames_on_windows(share, nfs_dir, make_agent):
    (nfs_dir / "notes.txt").write_text("payload\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "notes.txt").exists())

    (nfs_dir / "notes.txt").rename(nfs_dir / "Notes.txt")

    wait_until(lambda: "Notes.txt" in os.listdir(share.backing))
    assert tree_files(share.backing) == {"Notes.txt": b"payload\n"}
    assert agent.status()["problems"] == []


# -- 2. names Windows refuses -------------------------------------------------------------------

def test_names_windows_refuses_are_encoded_cheaply_and_decode_back(share, nfs_dir, make_agent):
    for name in REFUSED_BY_WINDOWS:
        (nfs_dir / name).write_text(f"content of {name}\n")
    agent = make_agent().start(wait=False)
    time.sleep(1)
    before = cpu_seconds(agent.pid)
    lines_before = len(agent.log_events())
    time.sleep(10)
    cpu = (cpu_seconds(agent.pid) - before) / 10
    lines = len(agent.log_events()) - lines_before

    on_windows = tree_files(share.backing)
    assert len(on_windows) == len(REFUSED_BY_WINDOWS)
    assert on_windows["a：b.txt"] == b"content of a:b.txt\n"
    assert on_windows["ａux.txt"] == b"content of aux.txt\n" and on_windows["ｃon"] == b"content of con\n"
    assert on_windows["trailing．"] == b"content of trailing.\n"
    assert on_windows["trailing␠"] == b"content of trailing \n"
    assert cpu <= 0.10 and lines <= 60, (cpu, lines)
    assert agent.status()["errors"] == 0

    (share.backing / "what？.txt").write_text("edited by the tester\n")
    wait_until(lambda: (nfs_dir / "what?.txt").read_text() == "edited by the tester\n")
    (share.backing / "new：from windows.txt").write_text("typed with a look-alike\n")
    wait_until(lambda: (nfs_dir / "new:from windows.txt").exists())


def test_report_mode_lists_refused_names_and_writes_none(share, nfs_dir, make_agent):
    for name in ("a:b.txt", "aux.txt", "fine.txt"):
        (nfs_dir / name).write_text(name)
    agent = make_agent(windows_names="report").start()

    wait_until(lambda: (share.backing / "fine.txt").exists())
    wait_until(lambda: len(agent.status()["problems"]) == 2)
    assert sorted(p["path"] for p in agent.status()["problems"]) == ["a:b.txt", "aux.txt"]
    assert tree_files(share.backing) == {"fine.txt": b"fine.txt"}
    assert all((nfs_dir / n).exists() for n in ("a:b.txt", "aux.txt"))


def test_a_path_too_long_for_windows_is_reported_not_retried_hot(share, nfs_dir, make_agent):
    deep = nfs_dir / ("d" * 120) / ("e" * 100)
    deep.mkdir(parents=True)
    (deep / "report.txt").write_text("x")
    (nfs_dir / "short.txt").write_text("y")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "short.txt").exists())
    wait_until(lambda: agent.status()["errors"] == 1)
    [problem] = agent.status()["problems"]
    assert problem["path"].endswith("/report.txt") and "too long" in problem["reason"]
    time.sleep(3)
    assert [e["event"] for e in agent.log_events()].count("problem") == 1


# -- 3. names that are not UTF-8 ----------------------------------------------------------------

def test_a_latin1_name_syncs_both_ways_and_the_agent_keeps_running(share, nfs_dir, make_agent):
    legacy = os.fsdecode(b"Bericht_M\xe4rz.csv")
    (nfs_dir / legacy).write_bytes(b"1;2\n")
    agent = make_agent()
    assert agent.run_once().returncode == 0
    assert tree_files(share.backing) == {"Bericht_M‛E4rz.csv": b"1;2\n"}

    agent.start()
    (share.backing / "Bericht_M‛E4rz.csv").write_text("3;4\n")
    wait_until(lambda: (nfs_dir / legacy).read_bytes() == b"3;4\n")
    (nfs_dir / os.fsdecode(b"Gr\xfc\xdfe.txt")).write_bytes(b"hallo\n")
    wait_until(lambda: (share.backing / "Gr‛FC‛DFe.txt").exists())
    agent.stop()
    assert agent.start().status()["files_tracked"] == 2  # restarts with the names in its state
    logged = [e["path"] for e in agent.log_events() if e["event"] == "copy"]
    assert "Bericht_M\\xe4rz.csv" in logged


# -- 4. edits the signature cannot see ----------------------------------------------------------

def same_size_same_mtime_edit(path, content: bytes) -> None:
    """The tester's tool writes new content and restores the old mtime (touch -r, robocopy)."""
    st = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_same_size_same_mtime_tester_edit_survives_a_later_nfs_edit(share, nfs_dir, make_agent):
    (share.backing / "same.txt").write_text("AAAA\n")
    old = time.time() - 60
    os.utime(share.backing / "same.txt", (old, old))
    agent = make_agent(hash_sweep_minutes=0).start()
    wait_until(lambda: (nfs_dir / "same.txt").exists())

    same_size_same_mtime_edit(share.backing / "same.txt", b"BBBB\n")
    time.sleep(1)
    (nfs_dir / "same.txt").write_text("CCCCCC from the app\n")

    wait_until(lambda: sorted(tree_files(share.backing).values()) == sorted(tree_files(nfs_dir).values())
               and len(tree_files(nfs_dir)) == 2)
    assert sorted(tree_files(nfs_dir).values()) == [b"BBBB\n", b"CCCCCC from the app\n"]
    wait_until(lambda: agent.status()["conflicts"] == 1)


def test_the_hash_sweep_finds_an_edit_that_kept_size_and_mtime(share, nfs_dir, make_agent):
    (share.backing / "quiet.txt").write_text("AAAA\n")
    old = time.time() - 60
    os.utime(share.backing / "quiet.txt", (old, old))
    agent = make_agent(hash_sweep_minutes=0.01).start()
    wait_until(lambda: (nfs_dir / "quiet.txt").exists())

    same_size_same_mtime_edit(share.backing / "quiet.txt", b"BBBB\n")

    wait_until(lambda: (nfs_dir / "quiet.txt").read_text() == "BBBB\n", timeout=15)
    assert any(e["event"] == "changed in place" for e in agent.log_events())


def test_two_same_size_files_swapped_within_a_second_are_seen(share, nfs_dir, make_agent):
    for name, text in (("left.txt", "LLLL\n"), ("right.txt", "RRRR\n")):
        (share.backing / name).write_text(text)
        old = time.time() - 60
        os.utime(share.backing / name, (old, old))
    make_agent(hash_sweep_minutes=0.01).start()
    wait_until(lambda: len(tree_files(nfs_dir)) == 2)

    a, b = share.backing / "left.txt", share.backing / "right.txt"
    a.rename(share.backing / "swap.tmp")
    b.rename(a)
    (share.backing / "swap.tmp").rename(b)

    wait_until(lambda: tree_files(nfs_dir) == {"left.txt": b"RRRR\n", "right.txt": b"LLLL\n"}, 15)


# -- 5. busy files --------------------------------------------------------------------------------

def test_a_log_appended_every_100_ms_grows_on_windows_while_written(share, nfs_dir, make_agent):
    make_agent(max_delay=1).start()
    done = threading.Event()
    seen: list[int] = []

    def write() -> None:
        with open(nfs_dir / "app.log", "a") as log:
            for i in range(80):
                log.write(f"line {i:03}\n")
                log.flush()
                time.sleep(0.1)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        path = share.backing / "app.log"
        if path.exists():
            content = path.read_text()
            lines = content.splitlines()
            assert content.endswith("\n") and lines == [f"line {i:03}" for i in range(len(lines))]
            seen.append(len(lines))
        time.sleep(0.2)
    writer.join()
    assert max(seen, default=0) >= 20, f"published while written: {sorted(set(seen))}"
    assert len(set(seen)) >= 3
    wait_until(lambda: (share.backing / "app.log").read_text() == (nfs_dir / "app.log").read_text())


def test_a_status_file_rewritten_by_rename_every_200_ms_publishes_versions(share, nfs_dir, make_agent):
    make_agent(max_delay=1).start()
    versions: set[str] = set()
    stop = time.monotonic() + 8
    i = 0
    while time.monotonic() < stop:
        temp = nfs_dir / ".status.json.tmp"
        temp.write_text(f'{{"tick": {i}}}\n')
        temp.rename(nfs_dir / "status.json")
        i += 1
        if (share.backing / "status.json").exists():
            versions.add((share.backing / "status.json").read_text())
        time.sleep(0.2)
    assert len(versions) >= 5, versions
    assert all(v.startswith('{"tick": ') and v.endswith("}\n") for v in versions)


# -- 6. renames, types, hard links, symlinks, permissions, holes ---------------------------------

def test_a_300_file_folder_renamed_on_windows_is_renamed_on_nfs_in_one_pass(share, nfs_dir, make_agent):
    (share.backing / "batch").mkdir()
    for i in range(300):
        (share.backing / "batch" / f"f{i:03}.dat").write_text(f"{i}\n")
    agent = make_agent(interval=1)
    assert agent.run_once().returncode == 0
    inodes = {p.name: p.stat().st_ino for p in (nfs_dir / "batch").iterdir()}
    agent.start()

    (share.backing / "batch").rename(share.backing / "batch-2026")

    wait_until(lambda: (nfs_dir / "batch-2026").is_dir() and not (nfs_dir / "batch").exists(), 15)
    assert {p.name: p.stat().st_ino for p in (nfs_dir / "batch-2026").iterdir()} == inodes
    # The agent logs an action after doing it: its line may come a moment after the rename.
    wait_until(lambda: [e["event"] for e in agent.log_events()].count("rename") >= 1)
    events = agent.log_events()
    assert [e["event"] for e in events].count("rename") == 1
    assert not [e for e in events if e["event"] in ("copy", "delete")], "renamed, not copied"
    assert agent.status()["held_deletions"] == 0


def test_a_folder_renamed_on_nfs_is_renamed_on_windows(share, nfs_dir, make_agent):
    (nfs_dir / "out").mkdir()
    for i in range(50):
        (nfs_dir / "out" / f"r{i}.csv").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 50)

    (nfs_dir / "out").rename(nfs_dir / "out-final")

    wait_until(lambda: (share.backing / "out-final").is_dir() and not (share.backing / "out").exists())
    assert len(tree_files(share.backing)) == 50
    assert [e["event"] for e in copies(agent)].count("copy") == 50


def test_a_file_replaced_by_a_folder_and_back_converges(share, nfs_dir, make_agent):
    (nfs_dir / "thing").write_text("a file\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "thing").is_file())

    (nfs_dir / "thing").unlink()
    (nfs_dir / "thing").mkdir()
    (nfs_dir / "thing" / "inside.txt").write_text("now a folder\n")
    wait_until(lambda: (share.backing / "thing" / "inside.txt").exists())
    versions = list(Versions.of_share(share.backing).folder.glob("thing~*"))
    assert [v.read_text() for v in versions] == ["a file\n"]

    (share.backing / "thing" / "inside.txt").unlink()
    (share.backing / "thing").rmdir()
    (share.backing / "thing").write_text("a file again\n")
    wait_until(lambda: (nfs_dir / "thing").is_file() and (nfs_dir / "thing").read_text() == "a file again\n")
    time.sleep(1)
    assert tree_files(nfs_dir) == tree_files(share.backing) == {"thing": b"a file again\n"}
    assert agent.status()["errors"] == 0


def test_hard_links_on_nfs_update_every_name_promptly(share, nfs_dir, make_agent):
    (nfs_dir / "one.txt").write_text("v1\n")
    os.link(nfs_dir / "one.txt", nfs_dir / "two.txt")
    make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 2)

    with open(nfs_dir / "one.txt", "w") as out:
        out.write("v2, longer\n")

    wait_until(lambda: tree_files(share.backing) == {"one.txt": b"v2, longer\n", "two.txt": b"v2, longer\n"},
               timeout=5)


def test_an_nfs_symlink_and_a_windows_file_of_the_same_name_both_survive(share, nfs_dir, make_agent):
    os.symlink("/etc/passwd", nfs_dir / "link")
    (share.backing / "link").write_text("the tester's file\n")
    agent = make_agent().start()
    time.sleep(1.5)
    assert os.path.islink(nfs_dir / "link") and os.readlink(nfs_dir / "link") == "/etc/passwd"
    assert (share.backing / "link").read_text() == "the tester's file\n"
    [problem] = agent.status()["problems"]
    assert problem["path"] == "link" and "symlink" in problem["reason"]


def test_read_only_is_carried_both_ways(share, nfs_dir, make_agent):
    (nfs_dir / "frozen.txt").write_text("do not edit\n")
    os.chmod(nfs_dir / "frozen.txt", 0o444)
    (share.backing / "mine.txt").write_text("mine\n")
    make_agent().start()
    wait_until(lambda: (share.backing / "frozen.txt").exists() and (nfs_dir / "mine.txt").exists())
    wait_until(lambda: not (share.backing / "frozen.txt").stat().st_mode & 0o200)

    os.chmod(share.backing / "mine.txt", 0o444)
    wait_until(lambda: not (nfs_dir / "mine.txt").stat().st_mode & 0o222)
    os.chmod(share.backing / "mine.txt", 0o644)
    wait_until(lambda: (nfs_dir / "mine.txt").stat().st_mode & 0o222)


def test_a_sparse_file_stays_sparse(share, nfs_dir, make_agent):
    with open(nfs_dir / "sparse.img", "wb") as out:
        out.seek(256 * 2**20)
        out.write(b"end")
    assert (nfs_dir / "sparse.img").stat().st_blocks * 512 < 2**20
    make_agent().start()
    target = share.backing / "sparse.img"
    wait_until(lambda: target.exists() and target.stat().st_size == 256 * 2**20 + 3, 30)
    assert target.stat().st_blocks * 512 < 4 * 2**20
    with open(target, "rb") as copied:
        copied.seek(256 * 2**20)
        assert copied.read() == b"end"


def test_the_agent_cli_runs_with_every_windows_flag():
    result = subprocess.run([sys.executable, "-m", "filesim.sync", "--help"], capture_output=True,
                            text=True)
    for flag in ("--windows-names", "--max-delay", "--hash-sweep-minutes", "--versions-days"):
        assert flag in result.stdout
