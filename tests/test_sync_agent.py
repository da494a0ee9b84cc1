"""The sync agent as a real process, against a real folder and a 9p-like FUSE share.

The test plays the Windows tester by writing into ``share.backing`` (no inotify reaches the
mount, as over 9p) and plays NFS clients by writing into the export folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import cpu_seconds, temp_files, tree_files, wait_until

CONFLICT = re.compile(r"^(?P<stem>.+)\.conflict-(?P<side>nfs|windows)-\d{8}T\d{6}Z(?P<suffix>.*)$")


def conflicts(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.conflict-*"))


def test_seed_copies_the_windows_share_into_the_export(share, nfs_dir, make_agent):
    (share.backing / "in").mkdir()
    (share.backing / "in" / "a.csv").write_text("1,2,3\n")
    (share.backing / "b.bin").write_bytes(os.urandom(70_000))

    result = make_agent("to-nfs").run_once()

    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_files(nfs_dir) == tree_files(share.backing)


def test_missing_share_marker_exits_3_with_one_clear_line(share, make_agent):
    (share.backing / ".filesim-share").unlink()

    result = make_agent().run_once()

    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert ".filesim-share is missing" in lines[0] and "not mounted" in lines[0]


def test_a_share_marker_vanishing_while_running_costs_little_until_it_is_back(share, nfs_dir,
                                                                            make_agent):
    marker = share.backing / ".filesim-share"
    identity = marker.read_text()
    agent = make_agent().start()
    marker.unlink()  # the 9p mount went away under the agent (the laptop slept)
    wait_until(lambda: not (agent.status() or {}).get("share_mounted", True))
    before = cpu_seconds(agent.pid)

    time.sleep(5)

    cpu = (cpu_seconds(agent.pid) - before) / 5
    assert cpu <= 0.10, f"the agent used {cpu:.0%} of a core waiting for the share"
    assert [e["event"] for e in agent.log_events()].count(
        "share marker missing: Windows share not mounted; nothing is synced") == 1
    marker.write_text(identity)
    (share.backing / "after.txt").write_text("the share is back\n")
    wait_until(lambda: (nfs_dir / "after.txt").exists())


def test_files_flow_both_ways_without_echo(share, nfs_dir, make_agent):
    agent = make_agent().start()

    (nfs_dir / "report.txt").write_text("from the system under test\n")
    wait_until(lambda: (share.backing / "report.txt").exists()
               and (share.backing / "report.txt").read_text() == "from the system under test\n")
    (share.backing / "input.txt").write_text("from the tester\n")
    wait_until(lambda: (nfs_dir / "input.txt").exists()
               and (nfs_dir / "input.txt").read_text() == "from the tester\n")

    time.sleep(1.5)  # several polls: nothing may be copied back
    copies = [e for e in agent.log_events() if e["event"] == "copy"]
    assert sorted((e["path"], e["direction"]) for e in copies) == [
        ("input.txt", "windows->nfs"), ("report.txt", "nfs->windows")]
    assert all(e["bytes"] > 0 and "ms" in e for e in copies)


def test_tester_file_in_output_folder_survives_and_reaches_nfs(share, nfs_dir, make_agent):
    (nfs_dir / "existing.out").write_text("old output\n")
    make_agent().start()
    wait_until(lambda: (share.backing / "existing.out").exists())

    (share.backing / "tester-note.txt").write_text("keep me\n")
    wait_until(lambda: (nfs_dir / "tester-note.txt").exists())
    time.sleep(1.0)

    assert (share.backing / "tester-note.txt").read_text() == "keep me\n"
    assert (nfs_dir / "tester-note.txt").read_text() == "keep me\n"


def test_edits_propagate_both_ways(share, nfs_dir, make_agent):
    (nfs_dir / "f.txt").write_text("v1\n")
    make_agent().start()
    wait_until(lambda: (share.backing / "f.txt").exists())

    (nfs_dir / "f.txt").write_text("v2 from nfs, longer\n")
    wait_until(lambda: (share.backing / "f.txt").read_text() == "v2 from nfs, longer\n")
    (share.backing / "f.txt").write_text("v3 from windows\n")
    wait_until(lambda: (nfs_dir / "f.txt").read_text() == "v3 from windows\n")
    time.sleep(1.0)
    assert (share.backing / "f.txt").read_text() == "v3 from windows\n"
    assert not conflicts(nfs_dir) and not conflicts(share.backing)


def test_same_size_edit_within_one_second_is_not_missed_on_windows(share, nfs_dir, make_agent):
    agent = make_agent(hash_sweep_minutes=0)  # the sweep would find it too, minutes later
    agent.start()
    wait_until(lambda: agent.status() is not None)
    (share.backing / "same.txt").write_text("AAAA\n")
    written = (share.backing / "same.txt").stat().st_mtime_ns
    wait_until(lambda: (nfs_dir / "same.txt").exists())

    # An edit within the same second keeping the size: 9p shows the very same signature
    # (whole seconds), so only the racy check (content verified near its mtime) can see it.
    (share.backing / "same.txt").write_text("BBBB\n")
    os.utime(share.backing / "same.txt", ns=(written, written))
    seen = (share.mount / "same.txt").stat()  # what the agent sees: unchanged
    assert (seen.st_size, seen.st_mtime_ns) == (5, written // 10**9 * 10**9)

    wait_until(lambda: (nfs_dir / "same.txt").read_text() == "BBBB\n", timeout=10)


def test_both_changed_while_down_keeps_both_versions_on_both_sides(share, nfs_dir, make_agent):
    (nfs_dir / "data.csv").write_text("original\n")
    agent = make_agent()
    assert agent.run_once().returncode == 0
    (nfs_dir / "data.csv").write_text("nfs edit\n")
    old = time.time() - 120
    os.utime(nfs_dir / "data.csv", (old, old))  # the NFS edit is older
    (share.backing / "data.csv").write_text("windows edit\n")

    agent.start()
    wait_until(lambda: len(conflicts(nfs_dir)) == 1 and len(conflicts(share.backing)) == 1)

    [saved] = conflicts(nfs_dir)
    match = CONFLICT.match(saved)
    assert match and match["stem"] == "data" and match["side"] == "nfs" and match["suffix"] == ".csv"
    for root in (nfs_dir, share.backing):
        assert (root / "data.csv").read_text() == "windows edit\n"
        assert (root / saved).read_text() == "nfs edit\n"
    wait_until(lambda: (agent.status() or {}).get("conflicts") == 1)
    assert agent.status()["recent_conflicts"][0]["kind"] == "both-changed"


def test_live_conflict_the_later_change_keeps_the_name(share, nfs_dir, make_agent):
    (nfs_dir / "plan.txt").write_text("v0\n")
    make_agent(settle=1.5).start()
    wait_until(lambda: (share.backing / "plan.txt").exists())

    with open(nfs_dir / "plan.txt", "w") as writer:  # open: the NFS side waits to settle
        writer.write("nfs version\n")
        writer.flush()
        time.sleep(0.5)  # both changes fall inside one settle period; Windows changes last
        (share.backing / "plan.txt").write_text("windows version\n")

    wait_until(lambda: conflicts(nfs_dir) and conflicts(share.backing), timeout=15)
    [saved] = conflicts(share.backing)
    assert "conflict-nfs-" in saved
    wait_until(lambda: (nfs_dir / "plan.txt").read_text() == "windows version\n")
    assert (share.backing / saved).read_text() == "nfs version\n"
    assert (nfs_dir / saved).read_text() == "nfs version\n"


@pytest.mark.parametrize("deleted_on", ["nfs", "windows"])
def test_delete_vs_edit_the_edit_wins(share, nfs_dir, make_agent, deleted_on):
    (nfs_dir / "keep.txt").write_text("v1\n")
    for i in range(4):
        (nfs_dir / f"other{i}.txt").write_text("x\n")
    agent = make_agent()
    assert agent.run_once().returncode == 0
    deleted, edited = (nfs_dir, share.backing) if deleted_on == "nfs" else (share.backing, nfs_dir)
    (deleted / "keep.txt").unlink()
    (edited / "keep.txt").write_text(f"v2 edited where it was not deleted ({deleted_on})\n")

    agent.start()

    for root in (nfs_dir, share.backing):
        wait_until(lambda r=root: (r / "keep.txt").exists() and (r / "keep.txt").read_text() ==
                   f"v2 edited where it was not deleted ({deleted_on})\n")
    wait_until(lambda: (agent.status() or {}).get("conflicts") == 1)
    assert agent.status()["recent_conflicts"][0]["kind"] == "delete-vs-edit"


def test_rename_and_directory_delete_propagate(share, nfs_dir, make_agent):
    (nfs_dir / "dir" / "sub").mkdir(parents=True)
    for i in range(3):
        (nfs_dir / "dir" / "sub" / f"f{i}").write_text(f"{i}\n")
    for i in range(8):
        (nfs_dir / f"keep{i}").write_text("k\n")
    (nfs_dir / "old-name.txt").write_text("renamed\n")
    make_agent().start()
    wait_until(lambda: (share.backing / "dir" / "sub" / "f2").exists()
               and (share.backing / "old-name.txt").exists())

    os.rename(nfs_dir / "old-name.txt", nfs_dir / "new-name.txt")
    subprocess.run(["rm", "-r", str(nfs_dir / "dir")], check=True)

    wait_until(lambda: not (share.backing / "dir").exists()
               and (share.backing / "new-name.txt").exists()
               and not (share.backing / "old-name.txt").exists())
    assert (share.backing / "new-name.txt").read_text() == "renamed\n"

    (share.backing / "win-dir").mkdir()
    (share.backing / "win-dir" / "a").write_text("a\n")
    wait_until(lambda: (nfs_dir / "win-dir" / "a").exists())
    (share.backing / "win-dir" / "a").rename(share.backing / "win-dir" / "b")
    wait_until(lambda: (nfs_dir / "win-dir" / "b").exists() and not (nfs_dir / "win-dir" / "a").exists())


def test_files_in_a_new_directory_are_not_missed(share, nfs_dir, make_agent):
    make_agent().start()

    for d in range(20):
        (nfs_dir / f"d{d}" / "deeper").mkdir(parents=True)
        for f in range(10):
            (nfs_dir / f"d{d}" / "deeper" / f"f{f}").write_text(f"{d}/{f}\n")

    wait_until(lambda: len(tree_files(share.backing)) == 200, timeout=30)
    assert tree_files(share.backing) == tree_files(nfs_dir)


def test_emptied_windows_root_propagates_no_deletion(share, nfs_dir, make_agent):
    for i in range(12):
        (nfs_dir / f"result{i}.txt").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 12)

    for path in share.backing.glob("result*"):
        path.unlink()  # e.g. the share was replaced by an empty folder that kept the marker

    wait_until(lambda: (agent.status() or {}).get("held_deletions") == 12)
    time.sleep(1.0)
    assert len(tree_files(nfs_dir)) == 12
    assert any(e["event"] == "deletions held" for e in agent.log_events())
    problems = agent.status()["problems"]
    assert len(problems) == 12 and all("invoke release" in p["reason"] for p in problems)
    (nfs_dir / "new-after.txt").write_text("still syncing\n")
    wait_until(lambda: (share.backing / "new-after.txt").exists())


def test_emptying_a_small_folder_is_not_held(share, nfs_dir, make_agent):
    for i in range(5):
        (nfs_dir / f"result{i}.txt").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 5)

    for path in share.backing.glob("result*"):
        path.unlink()

    wait_until(lambda: not tree_files(nfs_dir))
    assert agent.status()["held_deletions"] == 0 and agent.status()["errors"] == 0


def test_mass_deletion_is_held_until_released(share, nfs_dir, make_agent):
    for i in range(30):
        (nfs_dir / f"f{i}").write_text(f"{i}\n")
    agent = make_agent().start()
    wait_until(lambda: len(tree_files(share.backing)) == 30)

    (nfs_dir / "f0").unlink()
    wait_until(lambda: not (share.backing / "f0").exists())

    for i in range(1, 21):
        (nfs_dir / f"f{i}").unlink()
    wait_until(lambda: (agent.status() or {}).get("held_deletions", 0) > 0)
    time.sleep(1.0)
    assert all((share.backing / f"f{i}").exists() for i in range(15, 21))
    assert agent.status()["errors"] >= 1

    released = subprocess.run([sys.executable, "-m", "filesim.sync", "--state", str(agent.state),
                               "--request", "release", "--timeout", "10"], capture_output=True, text=True)
    assert released.returncode == 0, released.stdout + released.stderr
    wait_until(lambda: not any((share.backing / f"f{i}").exists() for i in range(21)))
    wait_until(lambda: (agent.status() or {}).get("errors") == 0)
    assert sorted(tree_files(share.backing)) == sorted(f"f{i}" for i in range(21, 30))


def test_sigterm_flushes_pending_changes_well_within_the_stop_grace(share, nfs_dir, make_agent):
    """podman's `pod stop` waits 15 s before it kills: the flush (budget 1.5 s) ends long before.

    The loop would sleep 30 s to its next deadline if SIGTERM did not wake it.
    """
    agent = make_agent(settle=30, interval=30).start()

    (nfs_dir / "last-words.txt").write_text("written just before shutdown\n")
    time.sleep(0.2)
    started = time.monotonic()
    code = agent.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < 7.5  # half the grace: a loose limit (the budget's figure is the agent's)
    assert (share.backing / "last-words.txt").read_text() == "written just before shutdown\n"
    assert agent.status()["stopped"] is True


def test_sigterm_during_a_long_first_pass_stops_soon_and_leaves_the_rest_pending(
        share, nfs_dir, make_agent):
    files = 3000
    for i in range(files):
        (nfs_dir / f"n{i:04}.txt").write_text(f"file {i}\n")
    agent = make_agent().start(wait=False)
    wait_until(lambda: len(tree_files(share.backing)) >= 100, timeout=30)  # copying has begun

    started = time.monotonic()
    assert agent.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - started < 5.0  # not the whole pass (a sidecar is killed after its grace period)
    final = agent.status()
    copied = len(tree_files(share.backing))
    assert final["stopped"] is True and copied < files
    assert final["pending"] >= files - copied  # what is left is counted: retire() flushes it

    agent = make_agent().start(wait=False)
    wait_until(lambda: len(tree_files(share.backing)) == files, timeout=60)
    assert (share.backing / "n2999.txt").read_text() == "file 2999\n"


def test_partial_windows_write_never_appears_torn(share, nfs_dir, make_agent):
    make_agent(settle=0.5).start()
    chunks = [os.urandom(64 * 1024) for _ in range(20)]
    full = b"".join(chunks)
    seen: list[bytes] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append((nfs_dir / "slow.bin").read_bytes())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with open(share.backing / "slow.bin", "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
            time.sleep(0.1)
    wait_until(lambda: (nfs_dir / "slow.bin").exists()
               and (nfs_dir / "slow.bin").read_bytes() == full, timeout=10)
    wait_until(lambda: seen, timeout=2)  # the watcher has looked at least once
    done.set()
    watcher.join()
    assert seen and all(content == full for content in seen)
    assert not temp_files(nfs_dir, share.backing)


def test_temp_files_from_a_killed_agent_are_removed_at_start(share, nfs_dir, make_agent):
    (nfs_dir / ".filesim-tmp.dead.beef.x").write_text("half")
    (share.backing / ".filesim-tmp.dead.beef.y").write_text("half")

    assert make_agent().run_once().returncode == 0

    assert not temp_files(nfs_dir, share.backing)


def test_to_windows_keeps_tester_files(share, nfs_dir, make_agent):
    (share.backing / "tester.txt").write_text("tester's own\n")
    (nfs_dir / "stays.txt").write_text("keeps the NFS side from being empty\n")
    agent = make_agent("to-windows")
    assert agent.run_once().returncode == 0  # seed: the tester file reaches NFS
    agent.start()

    (nfs_dir / "tester.txt").write_text("system overwrote it\n")
    (nfs_dir / "output.txt").write_text("output\n")
    wait_until(lambda: (share.backing / "output.txt").exists())
    wait_until(lambda: conflicts(share.backing))
    assert (share.backing / "tester.txt").read_text() == "tester's own\n"
    [saved] = conflicts(share.backing)
    assert (share.backing / saved).read_text() == "system overwrote it\n"

    (share.backing / "dropped-later.txt").write_text("mine\n")
    (nfs_dir / "output.txt").unlink()
    (nfs_dir / "tester.txt").unlink()
    wait_until(lambda: not (share.backing / "output.txt").exists())  # the agent's own copy
    time.sleep(1.0)
    assert (share.backing / "tester.txt").read_text() == "tester's own\n"
    assert (share.backing / "dropped-later.txt").read_text() == "mine\n"
    assert not (nfs_dir / "dropped-later.txt").exists()


def test_to_nfs_mirrors_windows_including_deletions(share, nfs_dir, make_agent):
    for i in range(4):
        (share.backing / f"in{i}.dat").write_text(f"{i}\n")
    agent = make_agent("to-nfs")
    assert agent.run_once().returncode == 0
    agent.start()

    (share.backing / "in0.dat").unlink()
    (share.backing / "in1.dat").write_text("changed on windows\n")
    (share.backing / "in4.dat").write_text("new\n")

    wait_until(lambda: tree_files(nfs_dir) == tree_files(share.backing))
    assert (nfs_dir / "in0.dat").exists() is False
    assert os.stat(nfs_dir / "in1.dat").st_mode & 0o777 == 0o644


def test_unmounted_share_mid_run_stops_syncing_and_is_reported(share, nfs_dir, make_agent):
    (nfs_dir / "a.txt").write_text("a\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "a.txt").exists())

    (share.backing / ".filesim-share").unlink()
    wait_until(lambda: (agent.status() or {}).get("share_mounted") is False)
    result = subprocess.run([sys.executable, "-m", "filesim.sync", "--state", str(agent.state),
                             "--health"], capture_output=True, text=True)
    assert result.returncode == 1 and "not mounted" in result.stdout
    (share.backing / "a.txt").unlink()
    time.sleep(1.0)
    assert (nfs_dir / "a.txt").exists()

    (share.backing / ".filesim-share").write_text("back\n")
    wait_until(lambda: (agent.status() or {}).get("share_mounted") is True)


def test_slow_scans_stretch_the_poll_interval_and_say_so(share, nfs_dir, make_agent):
    for d in range(10):
        (share.backing / f"d{d}").mkdir()
        for f in range(100):
            (share.backing / f"d{d}" / f"f{f}").write_text("x")
    agent = make_agent(interval=0.02)
    assert agent.run_once().returncode == 0
    agent.start()

    wait_until(lambda: any(e["event"] == "poll interval" for e in agent.log_events()))
    stretch = next(e for e in agent.log_events() if e["event"] == "poll interval")
    assert stretch["seconds"] >= 4 * stretch["scan_seconds"] > 0.02
    wait_until(lambda: (agent.status() or {}).get("interval", 0) > 0.02)


def test_status_is_rewritten_every_interval(share, make_agent):
    agent = make_agent(interval=0.3).start()
    first = agent.status()["updated_at"]
    wait_until(lambda: agent.status()["updated_at"] > first, timeout=2)
    status = agent.status()
    for key in ("last_full_pass", "pending", "conflicts", "errors", "files_tracked",
                "held_deletions", "share_mounted"):
        assert key in status


def test_an_export_on_a_shared_filesystem_is_refused_with_one_line(share, nfs_dir, make_agent):
    agent = make_agent(require_own_filesystem=True)

    result = agent.run_once()

    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert f"{nfs_dir} is a folder of a shared filesystem" in line and "invoke deploy" in line


def test_a_filesystem_root_is_recognised_from_mountinfo(tmp_path):
    from filesim.sync.tree import is_filesystem_root

    info = tmp_path / "mountinfo"
    info.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    "40 22 8:1 /var/lib/x /srv/bound rw - ext4 /dev/sda1 rw\n"
                    "41 22 7:3 / /srv/own\\040fs rw - ext4 /dev/loop3 rw\n")
    assert is_filesystem_root(Path("/srv/own fs"), info)
    assert not is_filesystem_root(Path("/srv/bound"), info)
    assert not is_filesystem_root(Path("/srv/elsewhere"), info)


@pytest.mark.slow
def test_an_idle_agent_writes_no_log_line_between_its_summaries(share, nfs_dir, make_agent):
    (share.backing / "a.txt").write_text("a\n")
    agent = make_agent().start()  # interval 0.3 s: ~60 passes below
    wait_until(lambda: (nfs_dir / "a.txt").exists())
    time.sleep(1)
    before = len(agent.log_events())
    time.sleep(20)
    assert agent.process.poll() is None, "the agent died: its silence proves nothing"
    assert agent.log_events()[before:] == []  # per-pass lines are debug; a summary comes a minute
