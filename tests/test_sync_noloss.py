"""Nothing lost around the agent (issue #9), the agent as a real process against the FUSE share.

Shapes that used to crash it, folders that refuse writes, a share that goes and comes back,
files the system under test deletes (kept as versions), and the requests the engines use to
make sure nothing is pending before an export goes (flush) or a test goes on (barrier).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from harness import cpu_seconds, tree_files, wait_until

from filesim.sync.versions import Versions


def request(agent, kind: str, timeout: float = 20) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-m", "filesim.sync", "--state", str(agent.state),
                             "--request", kind, "--timeout", str(timeout)],
                            capture_output=True, text=True, timeout=timeout + 10)
    return result.returncode, json.loads(result.stdout)


def test_an_nfs_symlink_over_a_windows_folder_never_crashes_and_both_survive(share, nfs_dir,
                                                                           make_agent):
    (share.backing / "reports").mkdir()
    (share.backing / "reports" / "q1.csv").write_text("tester's data\n")
    os.symlink("/tmp", nfs_dir / "reports")
    agent = make_agent().start()
    pid = agent.pid

    time.sleep(3)
    assert agent.process.poll() is None and agent.status()["pid"] == pid
    assert os.readlink(nfs_dir / "reports") == "/tmp"
    assert (share.backing / "reports" / "q1.csv").read_text() == "tester's data\n"
    assert not os.path.exists("/tmp/q1.csv"), "wrote through the symlink"
    problems = {p["path"]: p["reason"] for p in agent.status()["problems"]}
    assert "symlink" in problems["reports"]
    assert "not a folder" in problems["reports/q1.csv"]


@pytest.mark.ntfs
def test_a_windows_folder_refusing_writes_costs_little_and_the_file_lands_after(share, nfs_dir,
                                                                              make_agent):
    (share.backing / "locked").mkdir()
    agent = make_agent().start()
    share.lock("locked")
    (nfs_dir / "locked").mkdir(exist_ok=True)
    (nfs_dir / "locked" / "report.csv").write_text("waiting for the folder\n")
    time.sleep(0.5)
    before, lines = cpu_seconds(agent.pid), len(agent.log_events())

    time.sleep(10)

    cpu = (cpu_seconds(agent.pid) - before) / 10
    logged = len(agent.log_events()) - lines
    assert cpu <= 0.10 and logged <= 60, (cpu, logged)
    [problem] = agent.status()["problems"]
    assert problem["path"] == "locked/report.csv" and problem["side"] == "windows"
    assert problem["attempts"] >= 2 and problem["next_retry"] > time.time() - 1

    share.lock()
    unlocked = time.monotonic()
    wait_until(lambda: (share.backing / "locked" / "report.csv").exists(), timeout=30)
    assert time.monotonic() - unlocked <= 30
    wait_until(lambda: agent.status()["errors"] == 0)


@pytest.mark.ntfs
def test_a_file_open_in_excel_is_replaced_once_closed_and_kept_as_a_version(share, nfs_dir,
                                                                           make_agent):
    (share.backing / "sheet.xlsx").write_bytes(b"v1")
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / "sheet.xlsx").exists())
    share.lock("sheet.xlsx")

    (nfs_dir / "sheet.xlsx").write_bytes(b"v2 from the system under test")
    wait_until(lambda: agent.status()["errors"] == 1)
    assert (share.backing / "sheet.xlsx").read_bytes() == b"v1"

    share.lock()
    wait_until(lambda: (share.backing / "sheet.xlsx").read_bytes() == b"v2 from the system under test",
               timeout=30)
    versions = Versions.of_share(share.backing)
    [kept] = versions.of("sheet.xlsx")
    assert (versions.folder / kept.version).read_bytes() == b"v1"


def test_a_share_deleted_and_created_again_gets_everything_nfs_wrote_meanwhile(share, nfs_dir,
                                                                             make_agent):
    (nfs_dir / "before.txt").write_text("synced before\n")
    agent = make_agent().start()
    wait_until(lambda: (share.backing / "before.txt").exists())

    for path in share.backing.iterdir():  # the tester deletes the whole folder
        path.unlink() if path.is_file() else subprocess.run(["rm", "-rf", str(path)], check=True)
    wait_until(lambda: agent.status()["share_mounted"] is False)
    for i in range(50):
        (nfs_dir / f"meanwhile-{i}.txt").write_text(f"{i}\n")
    time.sleep(1)
    (share.backing / ".filesim-share").write_text("filesim share marker\nid: a-new-share\n")

    # Equal trees, not 51 names: a copy in flight shows as its temp name for a moment.
    wait_until(lambda: tree_files(share.backing) == tree_files(nfs_dir), timeout=20)
    assert len(tree_files(share.backing)) == 51
    assert agent.status()["share_id"] == "a-new-share" and agent.status()["held_deletions"] == 0
    assert any(e["event"] == "share replaced" for e in agent.log_events())


def test_a_testers_file_deleted_over_nfs_is_kept_and_restored_on_both_sides(share, nfs_dir,
                                                                          make_agent):
    (share.backing / "input.csv").write_text("the tester's only copy\n")
    agent = make_agent().start()
    wait_until(lambda: (nfs_dir / "input.csv").exists())

    (nfs_dir / "input.csv").unlink()  # the system under test cleans up its input
    wait_until(lambda: not (share.backing / "input.csv").exists())

    versions = Versions.of_share(share.backing)
    [kept] = versions.of("input.csv")
    assert kept.size == len("the tester's only copy\n")
    versions.restore("input.csv")
    assert (share.backing / "input.csv").read_text() == "the tester's only copy\n"
    wait_until(lambda: (nfs_dir / "input.csv").exists()
               and (nfs_dir / "input.csv").read_text() == "the tester's only copy\n")
    assert agent.status()["errors"] == 0


def test_versions_are_pruned_by_age_and_size(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    versions = Versions(share, days=1, max_bytes=10)
    for name, age in (("old.txt", 3 * 86400), ("a.txt", 60), ("b.txt", 30)):
        (share / name).write_text("12345678")
        fd = os.open(share, os.O_RDONLY | os.O_DIRECTORY)
        versions.keep(fd, name, name)
        os.close(fd)
        kept = versions.all()[-1]
        index = versions.folder / "index.jsonl"
        lines = index.read_text().splitlines()
        lines[-1] = json.dumps({**json.loads(lines[-1]), "at": kept.at - age})
        index.write_text("\n".join(lines) + "\n")
    assert versions.prune() == 2  # one too old, then the oldest beyond 10 bytes
    assert [v.path for v in versions.all()] == ["b.txt"]


def test_a_flush_request_copies_what_waits_for_settle_at_once(share, nfs_dir, make_agent):
    agent = make_agent(settle=30, interval=30).start()
    (nfs_dir / "late.txt").write_text("written just now\n")
    time.sleep(0.3)

    code, answer = request(agent, "flush")

    assert code == 0 and answer["ok"] is True and answer["pending"] == []
    assert (share.backing / "late.txt").read_text() == "written just now\n"


def test_a_flush_after_a_file_folder_conflict_is_clean_and_kept_both(share, nfs_dir, make_agent):
    os.symlink("/etc", nfs_dir / "etc-link")  # a policy problem: never synced, never blocks
    agent = make_agent().start()
    (share.backing / "blocked").write_text("a file where NFS wants a folder\n")
    wait_until(lambda: (nfs_dir / "blocked").exists())
    (nfs_dir / "blocked").unlink()
    (nfs_dir / "blocked").mkdir()  # and the Windows file changes too: both versions must stay
    (nfs_dir / "blocked" / "data.csv").write_text("only on NFS\n")
    (share.backing / "blocked").write_text("the tester changed it meanwhile\n")

    wait_until(lambda: b"only on NFS\n" in tree_files(share.backing).values(), timeout=15)
    code, answer = request(agent, "flush")

    assert code == 0, answer
    assert sorted(tree_files(share.backing).values()) == sorted(tree_files(nfs_dir).values()) == [
        b"only on NFS\n", b"the tester changed it meanwhile\n"]


@pytest.mark.ntfs
def test_a_flush_is_not_ok_while_a_file_cannot_reach_windows(share, nfs_dir, make_agent):
    (share.backing / "locked").mkdir()
    agent = make_agent().start()
    share.lock("locked")
    (nfs_dir / "locked").mkdir(exist_ok=True)
    (nfs_dir / "locked" / "out.csv").write_text("only on NFS\n")
    wait_until(lambda: agent.status()["errors"] == 1)

    code, answer = request(agent, "flush")

    assert code == 1 and answer["ok"] is False
    assert [p["path"] for p in answer["problems"]] == ["locked/out.csv"]
    share.lock()
    wait_until(lambda: request(agent, "flush")[0] == 0, timeout=30)


def test_a_barrier_returns_once_a_change_made_before_it_reached_the_other_side(share, nfs_dir,
                                                                             make_agent):
    agent = make_agent(interval=1).start()
    (share.backing / "dropped.txt").write_text("for the system under test\n")

    code, answer = request(agent, "barrier")

    assert code == 0 and answer["ok"] is True
    assert (nfs_dir / "dropped.txt").read_text() == "for the system under test\n"


def test_a_barrier_times_out_naming_what_is_pending(share, nfs_dir, make_agent):
    agent = make_agent(settle=60, max_delay=60).start()
    with open(nfs_dir / "settling.txt", "w") as writer:  # still being written: it settles
        writer.write("x")
        writer.flush()
        code, answer = request(agent, "barrier", timeout=2)

    assert code == 1 and answer["ok"] is False
    assert "settling.txt" in answer["pending"]


def test_a_share_that_stays_unreachable_makes_the_agent_exit_for_a_fresh_mount(share, nfs_dir,
                                                                             make_agent):
    agent = make_agent().start()
    share.process.send_signal(signal.SIGKILL)  # the mount dies: every access fails (ENOTCONN)
    share.process.wait()

    code = agent.process.wait(60)

    assert code == 4
    events = [e["event"] for e in agent.log_events()]
    assert "share lost" in events and events.count("side unavailable") <= 40
