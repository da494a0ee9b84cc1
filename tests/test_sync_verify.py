"""Verify before acting (issue #19): no deletion on one observation, whatever is deleted is kept.

Each numbered case of the issue is a test here, the agent a real process against the FUSE
share (tests/support/ninepfs.py), which plays minikube's 9p server: listings that leave
entries out, deny ACLs, read counters. The test plays the tester in ``share.backing`` and the
system under test in the export folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from harness import temp_files, tree_files, wait_until

from filesim.sync.tree import DestinationChanged, NotAFile, Tree
from filesim.sync.versions import Versions, nfs_versions


def request(agent, kind: str, timeout: float = 20, *extra: str) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-m", "filesim.sync", "--state", str(agent.state),
                             "--request", kind, "--timeout", str(timeout), *extra],
                            capture_output=True, text=True, timeout=timeout + 10)
    return result.returncode, json.loads(result.stdout)


def deletions(agent) -> list[dict]:
    """What the agent deleted: its lines, one per file or one per bulk batch."""
    return [e for e in agent.log_events() if e["event"] in ("delete", "delete (batch)")]


def kept_on_nfs(agent) -> dict[str, bytes]:
    """What the agent kept of the NFS side: path → content of its latest version."""
    kept = Versions(nfs_versions(agent.state))
    return {v.path: (kept.folder / v.version).read_bytes() for v in kept.under("", folded=False)}


# -- case 1: a NAS folder deleted file by file --------------------------------------------------


@pytest.mark.slow
def test_a_nas_folder_deleted_file_by_file_keeps_every_nfs_written_file(share, nfs_dir, make_agent):
    written = {f"out/result-{i:03}.csv": f"written over NFS {i}\n".encode() for i in range(400)}
    for name, data in written.items():
        (nfs_dir / name).parent.mkdir(exist_ok=True)
        (nfs_dir / name).write_bytes(data)
    for i in range(100):
        (share.backing / f"input-{i:03}.csv").write_text(f"tester's {i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 500, timeout=30)

    # Explorer deletes the NAS folder file by file over ~10 s; the marker goes last.
    files = sorted(p for p in share.backing.rglob("*") if p.is_file() and p.name != ".filesim-share"
                   and ".filesim" not in p.parts)
    for path in files:
        path.unlink()
        time.sleep(10 / len(files))
    for folder in sorted((p for p in share.backing.rglob("*") if p.is_dir()), reverse=True):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    (share.backing / ".filesim-share").unlink()
    time.sleep(3)

    assert agent.process.poll() is None
    kept = kept_on_nfs(agent)
    lost = [name for name, data in written.items()
            if not ((nfs_dir / name).is_file() and (nfs_dir / name).read_bytes() == data)
            and kept.get(name) != data]
    assert lost == [], f"{len(lost)} NFS-written files neither on the export nor kept"
    on_export = sum((nfs_dir / name).is_file() for name in written)
    assert on_export >= 300, f"only {on_export} of 400 still on the export: the guard came late"


# -- case 2: listings that leave entries out ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.listing_drops(0.05)
def test_listings_that_leave_entries_out_delete_nothing_and_a_real_deletion_still_goes(
        share, nfs_dir, make_agent):
    for i in range(1000):
        folder = share.backing / f"d{i // 50:02}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04}.txt").write_text(f"{i}\n")
    agent = make_agent().start(wait=False)
    wait_until(lambda: len(tree_files(nfs_dir)) == 1000, timeout=60)

    fewest = 1000
    until = time.monotonic() + 60
    while time.monotonic() < until:
        fewest = min(fewest, len(tree_files(nfs_dir)))
        time.sleep(0.2)
    assert fewest == 1000 and deletions(agent) == []
    assert agent.process.poll() is None

    (share.backing / "d03" / "f0150.txt").unlink()
    deleted = time.monotonic()
    wait_until(lambda: not (nfs_dir / "d03" / "f0150.txt").exists(), timeout=10)
    assert time.monotonic() - deleted <= 10
    assert len(tree_files(nfs_dir)) == 999


# -- case 3: renames with the host watcher are in test_sync_journal.py ---------------------------

# -- case 4: the agent's own names --------------------------------------------------------------


@pytest.mark.ntfs
def test_files_named_like_the_agents_own_are_synced_and_survive_a_restart(share, nfs_dir, make_agent):
    nfs_names = {".filesim-tmp.from-nfs": b"a", "sub/.filesim-tmp.deeper": b"b",
                 ".filesim-probe.nfs": b"c", ".filesim/notes.txt": b"d", ".filesim-share": b"e",
                 ".filesim-tmp.0123abcd": b"f"}
    windows_names = {".filesim-tmp.from-windows": b"g", ".filesim-probe.windows": b"h"}
    for name, data in nfs_names.items():
        (nfs_dir / name).parent.mkdir(exist_ok=True)
        (nfs_dir / name).write_bytes(data)
    for name, data in windows_names.items():
        (share.backing / name).write_bytes(data)
    # The encoded names the NFS names take on Windows (the marker and .filesim are the agent's).
    shown = {".filesim-tmp.from-nfs": ".filesim-tmp.from-nfs", "sub/.filesim-tmp.deeper":
             "sub/.filesim-tmp.deeper", ".filesim-probe.nfs": ".filesim-probe.nfs",
             ".filesim/notes.txt": "\uff0efilesim/notes.txt", ".filesim-share": "\uff0efilesim-share",
             ".filesim-tmp.0123abcd": ".filesim-tmp.0123abcd"}

    def everywhere() -> bool:
        return all((share.backing / shown[n]).is_file() and (share.backing / shown[n]).read_bytes() == d
                   for n, d in nfs_names.items()) and all(
            (nfs_dir / n).is_file() and (nfs_dir / n).read_bytes() == d for n, d in windows_names.items())

    agent = make_agent().start()
    wait_until(everywhere, timeout=15)
    assert (share.backing / ".filesim-share").read_text().startswith("filesim share marker")
    agent.stop()

    again = make_agent().start()
    time.sleep(1.5)
    assert everywhere()
    assert again.status()["errors"] == 0 and again.status()["pending"] == 0


# -- case 5: a FIFO swapped in for a file --------------------------------------------------------


def test_a_fifo_swapped_in_for_a_file_never_blocks_a_read_or_a_copy(tmp_path):
    source, dest = tmp_path / "source", tmp_path / "dest"
    source.mkdir()
    dest.mkdir()
    (source / "data.csv").write_text("a file when it was listed\n")
    listed = Tree(source, "nfs").stat("data.csv")
    (source / "data.csv").unlink()
    os.mkfifo(source / "data.csv")  # swapped before the copy opens it; nobody ever writes
    outcome: dict[str, object] = {}

    def attempt() -> None:
        for what, call in (("hash", lambda: Tree(source, "nfs").hash("data.csv")),
                           ("copy", lambda: Tree(dest, "windows").copy_from(
                               Tree(source, "nfs"), "data.csv", listed))):
            try:
                call()
                outcome[what] = "done"
            except NotAFile as exc:
                outcome[what] = exc

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "blocked opening a FIFO"
    assert isinstance(outcome["hash"], NotAFile) and isinstance(outcome["copy"], NotAFile)
    assert not list(dest.iterdir())  # no temp file, nothing half-written


# -- case 6: a folder the agent may not list -----------------------------------------------------


@pytest.mark.ntfs
def test_a_folder_with_a_deny_acl_is_a_problem_and_nothing_below_it_is_deleted(
        share, nfs_dir, make_agent):
    (share.backing / "private").mkdir()
    for i in range(20):
        (share.backing / "private" / f"p{i}.txt").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(nfs_dir)) == 20)
    agent.stop()
    share.deny("private")

    agent = make_agent().start()  # start-up (temp cleanup included) must not stop on it
    (share.backing / "other.txt").write_text("still synced\n")
    wait_until(lambda: (nfs_dir / "other.txt").exists())
    wait_until(lambda: any(p["path"] == "private" for p in agent.status()["problems"]))
    time.sleep(2)  # several polls and retries

    assert agent.process.poll() is None
    assert len(list((nfs_dir / "private").iterdir())) == 20 and deletions(agent) == []
    [problem] = [p for p in agent.status()["problems"] if p["path"] == "private"]
    assert "cannot be listed" in problem["reason"] and problem["side"] == "windows"
    share.deny()
    wait_until(lambda: agent.status()["errors"] == 0, timeout=70)


# -- case 7: a Windows file dated in the future ---------------------------------------------------


def test_a_windows_file_dated_in_the_future_is_read_once_not_at_every_poll(share, nfs_dir, make_agent):
    future = share.backing / "from-a-laptop-a-day-ahead.bin"
    future.write_bytes(os.urandom(8 << 20))
    ahead = time.time() + 86400
    os.utime(future, (ahead, ahead))
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / future.name).is_file()
               and (nfs_dir / future.name).stat().st_size == 8 << 20, timeout=20)
    time.sleep(1)
    before = share.stats()["read_bytes"].get(future.name, 0)

    time.sleep(6)  # twenty polls at 0.3 s

    assert agent.process.poll() is None
    read = share.stats()["read_bytes"].get(future.name, 0) - before
    assert read < 8 << 20, f"read {read / 2**20:.0f} MiB more in 6 s"


# -- case 8: names ---------------------------------------------------------------------------------


@pytest.mark.ntfs
def test_two_windows_names_that_decode_to_one_nfs_name_both_sync_and_are_named(
        share, nfs_dir, make_agent):
    (share.backing / "stray.txt").write_text("plain\n")
    (share.backing / "\u201bstray.txt").write_text("with a stray quote\n")
    agent = make_agent().start()

    wait_until(lambda: sorted(tree_files(nfs_dir).values()) == [b"plain\n", b"with a stray quote\n"])
    assert (nfs_dir / "stray.txt").read_text() == "plain\n"
    notices = [p for p in agent.status()["problems"] if not p["blocks"]]
    assert len(notices) == 1 and "stands for 'stray.txt'" in notices[0]["reason"]
    other = notices[0]["path"]
    (nfs_dir / other).write_text("edited over NFS\n")
    wait_until(lambda: (share.backing / "\u201bstray.txt").read_text() == "edited over NFS\n")
    assert (share.backing / "stray.txt").read_text() == "plain\n"


@pytest.mark.ntfs
def test_device_names_with_spaces_and_dotted_folders_reach_windows_encoded_and_come_back(
        share, nfs_dir, make_agent):
    names = {"con .txt": b"1", "nul.tar.gz": b"2", "data./inner.txt": b"3", "aux  .log": b"4"}
    for name, data in names.items():
        (nfs_dir / name).parent.mkdir(exist_ok=True)
        (nfs_dir / name).write_bytes(data)
    agent = make_agent().start()
    wait_until(lambda: sorted(tree_files(share.backing).values()) == sorted(names.values()))
    assert agent.status()["errors"] == 0
    edited = {n: d + b" edited on Windows" for n, d in names.items()}
    for path in (p for p in share.backing.rglob("*") if p.is_file() and p.name != ".filesim-share"):
        path.write_bytes(path.read_bytes() + b" edited on Windows")
    wait_until(lambda: all((nfs_dir / n).read_bytes() == d for n, d in edited.items()))
    assert sorted(tree_files(nfs_dir)) == sorted(names)


@pytest.mark.ntfs
def test_a_case_collision_notice_goes_once_the_collision_is_gone(share, nfs_dir, make_agent):
    (nfs_dir / "Report.csv").write_text("upper\n")
    (nfs_dir / "report.csv").write_text("lower\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 2)
    wait_until(lambda: [p for p in agent.status()["problems"] if not p["blocks"]])

    (nfs_dir / "report.csv").rename(nfs_dir / "summary.csv")
    wait_until(lambda: sorted(tree_files(share.backing)) == ["Report.csv", "summary.csv"])
    wait_until(lambda: agent.status()["problems"] == [])


@pytest.mark.ntfs
def test_retries_on_a_locked_file_keep_one_version_not_one_per_retry(share, nfs_dir, make_agent):
    (share.backing / "sheet.xlsx").write_bytes(b"v1")
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / "sheet.xlsx").exists())
    share.lock("sheet.xlsx")
    (nfs_dir / "sheet.xlsx").write_bytes(b"v2")
    wait_until(lambda: any(p["attempts"] >= 3 for p in agent.status()["problems"]), timeout=20)
    share.lock()
    wait_until(lambda: (share.backing / "sheet.xlsx").read_bytes() == b"v2", timeout=30)

    # The version is recorded just after the new content is renamed into place.
    versions = Versions.of_share(share.backing)
    wait_until(lambda: versions.all(), timeout=10)
    time.sleep(1)  # a version per retry would show by now
    assert [v.path for v in versions.all()] == ["sheet.xlsx"]
    index = (versions.folder / "index.jsonl").read_text().splitlines()
    assert len(index) == 1


# -- case 9: dates -----------------------------------------------------------------------------------


def test_old_windows_dates_arrive_on_nfs(share, nfs_dir, make_agent):
    for name, when in (("1970.csv", 86400), ("2001.csv", 978307200), ("leap.csv", 1709208000)):
        (share.backing / name).write_text(name)
        os.utime(share.backing / name, (when, when))
    make_agent().run_once()
    assert {p.name: int(p.stat().st_mtime) for p in nfs_dir.iterdir()} == {
        "1970.csv": 86400, "2001.csv": 978307200, "leap.csv": 1709208000}


# -- the guard -------------------------------------------------------------------------------------


def test_held_deletions_never_go_through_without_a_release(share, nfs_dir, make_agent):
    for i in range(30):
        (nfs_dir / f"f{i:02}").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 30)
    for i in range(20):
        (share.backing / f"f{i:02}").unlink()
    wait_until(lambda: agent.status()["held_deletions"] == 20)

    for i in range(100):  # the tracked count grows: 20 of 130 is no longer a mass deletion
        (share.backing / f"new{i:03}").write_text(f"new {i}\n")
    wait_until(lambda: len(tree_files(nfs_dir)) == 130)
    code, answer = request(agent, "flush")  # every held path is looked at again, as destroy asks
    assert code == 1 and len(answer["problems"]) == 20  # the held files are on NFS only
    assert all((nfs_dir / f"f{i:02}").exists() for i in range(20)), "held deletions went through"
    assert deletions(agent) == [] and agent.status()["held_deletions"] == 20

    code, answer = request(agent, "release")
    assert code == 0 and answer["released"] == 20
    wait_until(lambda: len(tree_files(nfs_dir)) == 110)


def test_many_deletions_within_seconds_are_held_below_the_fraction(share, nfs_dir, make_agent):
    for i in range(600):
        (share.backing / f"f{i:03}").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(nfs_dir)) == 600, timeout=30)

    for i in range(150):  # 25 %: below the fraction, above the rate
        (share.backing / f"f{i:03}").unlink()

    wait_until(lambda: agent.status()["held_deletions"] > 0)
    time.sleep(2)
    assert len(tree_files(nfs_dir)) >= 600 - 100
    assert any("within 10s" in p["reason"] for p in agent.status()["problems"])


def test_a_deletion_seen_once_is_not_propagated_until_a_second_look_agrees(share, nfs_dir,
                                                                        make_agent):
    (nfs_dir / "keep.txt").write_text("here\n")
    agent = make_agent(settle=3, interval=0.3).start()
    wait_until(lambda: (share.backing / "keep.txt").exists())
    (share.backing / "keep.txt").unlink()
    time.sleep(1.5)  # seen missing by polls, but not the settle time apart
    assert (nfs_dir / "keep.txt").exists()
    (share.backing / "keep.txt").write_text("here\n")  # it was a glitch: back
    time.sleep(4)
    assert (nfs_dir / "keep.txt").read_text() == "here\n" and deletions(agent) == []


# -- what the sync deletes or replaces is kept on both sides -----------------------------------------


def test_what_a_windows_deletion_removes_from_nfs_is_kept_and_restored(share, nfs_dir, make_agent):
    (nfs_dir / "report.csv").write_text("the system under test's only copy\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "report.csv").exists())
    (share.backing / "report.csv").unlink()
    wait_until(lambda: not (nfs_dir / "report.csv").exists())
    assert kept_on_nfs(agent) == {"report.csv": b"the system under test's only copy\n"}

    code, answer = request(agent, "restore", 20, "--path", "report.csv")

    assert code == 0 and [r["path"] for r in answer["restored"]] == ["report.csv"]
    assert (nfs_dir / "report.csv").read_text() == "the system under test's only copy\n"
    wait_until(lambda: (share.backing / "report.csv").exists())
    assert not temp_files(nfs_dir, share.backing)


def test_what_a_windows_edit_replaces_on_nfs_is_kept(share, nfs_dir, make_agent):
    (nfs_dir / "config.ini").write_text("v1 from NFS\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "config.ini").exists())
    (share.backing / "config.ini").write_text("v2 from the tester\n")
    wait_until(lambda: (nfs_dir / "config.ini").read_text() == "v2 from the tester\n")
    assert kept_on_nfs(agent) == {"config.ini": b"v1 from NFS\n"}


def test_windows_versions_outlive_the_nas_folder(share, nfs_dir, make_agent):
    (share.backing / "input.csv").write_text("the tester's only copy\n")
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / "input.csv").exists())
    (nfs_dir / "input.csv").unlink()
    wait_until(lambda: not (share.backing / "input.csv").exists())
    agent.stop()

    subprocess.run(["rm", "-rf", str(share.backing)], check=True)  # the whole NAS folder

    versions = Versions.of_share(share.backing)
    [kept] = versions.of("input.csv")
    assert (versions.folder / kept.version).read_text() == "the tester's only copy\n"


def test_a_barrier_says_at_once_that_deletions_are_held(share, nfs_dir, make_agent):
    for i in range(30):
        (nfs_dir / f"f{i:02}").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 30)
    for i in range(20):
        (share.backing / f"f{i:02}").unlink()
    wait_until(lambda: agent.status()["held_deletions"] == 20)

    started = time.monotonic()
    code, answer = request(agent, "barrier", 30)

    assert code == 1 and time.monotonic() - started < 10
    assert "held by the mass-deletion guard" in answer["error"] and len(answer["pending"]) == 20


def test_a_folder_copied_with_its_dates_is_a_copy_not_a_rename(share, nfs_dir, make_agent):
    original = share.backing / "reports"
    original.mkdir()
    for i in range(300):
        (original / f"r{i:03}.csv").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(nfs_dir)) == 300)

    shutil.copytree(original, share.backing / "reports-copy")  # dates kept, as Explorer does

    wait_until(lambda: len(tree_files(nfs_dir)) == 600)
    assert tree_files(nfs_dir) == tree_files(share.backing)
    assert not [e for e in agent.log_events() if e["event"] in ("rename", "delete", "delete (batch)")]


def test_a_folder_renamed_while_a_file_is_copied_into_it_never_passes_for_the_path(tmp_path):
    """Issue #21: folders held across a copy; the copy is done only where the path leads."""
    source, dest = tmp_path / "source", tmp_path / "dest"
    (source / "box").mkdir(parents=True)
    (dest / "box").mkdir(parents=True)
    (source / "box" / "big.bin").write_bytes(os.urandom(3 << 20))
    listed = Tree(source, "nfs").stat("box/big.bin")
    moved = []

    def rename_midway(size: int) -> None:  # the tester renames the folder while it is written
        if not moved:
            (dest / "box").rename(dest / "moved")
            (dest / "box").mkdir()  # and makes another of that name
            moved.append(size)

    with pytest.raises(DestinationChanged):
        Tree(dest, "windows", windows=True).copy_from(Tree(source, "nfs"), "box/big.bin", listed,
                                                      progress=rename_midway)
    assert moved and not (dest / "box" / "big.bin").exists()
    assert not temp_files(dest)


@pytest.mark.parametrize("changed", ["edited", "created", "same-second edit"])
def test_nothing_is_overwritten_or_deleted_that_changed_since_it_was_last_seen(tmp_path, changed):
    """The destination must still be what was last seen (or absent) before a copy or a delete."""
    source, dest = tmp_path / "source", tmp_path / "dest"
    source.mkdir()
    dest.mkdir()
    (source / "a.txt").write_text("from the other side\n")
    windows = Tree(dest, "windows", windows=True)
    listed = Tree(source, "nfs").stat("a.txt")
    last_seen, sha = None, None
    if changed != "created":
        (dest / "a.txt").write_text("agreed\n")
        last_seen, sha = windows.stat("a.txt"), windows.hash("a.txt")
    stamp = (dest / "a.txt").stat().st_mtime_ns if last_seen else 0
    (dest / "a.txt").write_text({"edited": "a tester's edit\n", "created": "a tester's file\n",
                                 "same-second edit": "AGREED\n"}[changed])
    if changed == "same-second edit":  # the signature cannot tell: only the content can
        os.utime(dest / "a.txt", ns=(stamp, stamp))
        assert windows.stat("a.txt") == last_seen
    after = (dest / "a.txt").read_text()

    with pytest.raises(DestinationChanged):
        windows.copy_from(Tree(source, "nfs"), "a.txt", listed, dest_expected=last_seen, dest_sha=sha)
    assert (dest / "a.txt").read_text() == after and not temp_files(dest)
    if last_seen is not None:
        with pytest.raises(DestinationChanged):
            windows.remove("a.txt", last_seen, sha)
        assert (dest / "a.txt").read_text() == after
