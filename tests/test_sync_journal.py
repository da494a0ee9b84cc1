"""Change hints from the host watcher: the journal format, and the agent driven by a real watcher.

The watcher watches the share's backing folder (the Windows side, where events exist); the agent
reads the journal through the 9p-like FUSE mount, which raises no events of its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time

import pytest
from harness import WatcherProcess, wait_until

from filesim.sync.items import RACY_SECONDS
from filesim.sync.journal import (
    FOLLOW_EVERY,
    JOURNAL,
    ROTATE_BYTES,
    STALE,
    Hints,
    JournalReader,
    JournalWriter,
)


@pytest.fixture
def follow(tmp_path):
    """A reader following tmp_path's journal with a real tail, from its end as it is now."""
    readers = []

    def started() -> JournalReader:
        reader = JournalReader(tmp_path / JOURNAL, logging.getLogger("test-journal"), lambda fd: None)
        assert reader.start()
        readers.append(reader)
        return reader

    yield started
    for reader in readers:
        reader.stop()


def read_until(reader: JournalReader, done, timeout: float = 5.0) -> Hints:
    """Hints read until ``done(hints)`` holds: tail passes lines on within FOLLOW_EVERY."""
    merged = Hints()
    deadline = time.monotonic() + timeout
    while True:
        hints = reader.read()
        merged.paths |= hints.paths
        merged.closed |= hints.closed
        merged.rescan |= hints.rescan
        if done(merged) or time.monotonic() > deadline:
            return merged
        time.sleep(0.05)


def quiet(reader: JournalReader) -> Hints:
    """What is read over a few of tail's looks (for what must not come)."""
    return read_until(reader, lambda hints: False, timeout=4 * FOLLOW_EVERY)


def test_hints_written_by_the_watcher_are_read_once_each(tmp_path, follow):
    writer = JournalWriter(tmp_path)
    writer.changed(["old.txt"])
    reader = follow()  # following starts at the end: old news
    legacy = os.fsdecode(b"legacy-\xe9.txt")
    writer.changed(["a/b.txt", "c.txt", legacy])
    writer.beat()
    hints = read_until(reader, lambda h: h.paths)
    assert hints.paths == {"a/b.txt", "c.txt", legacy} and not hints.rescan
    assert reader.fresh
    assert quiet(reader).paths == set()


def test_a_hint_leading_outside_the_share_is_dropped_and_asks_for_a_rescan(tmp_path, follow):
    JournalWriter(tmp_path).beat()
    reader = follow()
    with open(tmp_path / JOURNAL, "a") as journal:
        journal.write(json.dumps({"paths": ["../../etc/passwd", "/etc/shadow", "a//b", "ok.txt"]}) + "\n")
        journal.write("not json\n")
    hints = read_until(reader, lambda h: h.paths and h.rescan)
    assert hints.paths == {"ok.txt"} and hints.rescan


def test_a_line_still_being_written_waits_for_its_end(tmp_path, follow):
    JournalWriter(tmp_path).beat()
    reader = follow()
    line = json.dumps({"paths": ["half.txt"]}) + "\n"
    with open(tmp_path / JOURNAL, "a") as journal:
        journal.write(line[:10])
    assert quiet(reader).paths == set()
    with open(tmp_path / JOURNAL, "a") as journal:
        journal.write(line[10:])
    assert read_until(reader, lambda h: h.paths).paths == {"half.txt"}


def test_a_journal_started_over_asks_for_a_rescan(tmp_path, follow):
    writer = JournalWriter(tmp_path)
    writer.beat()
    reader = follow()
    while (tmp_path / JOURNAL).stat().st_size <= ROTATE_BYTES:
        writer.changed([f"g{i:06}-{'x' * 200}" for i in range(1000)])
    read_until(reader, lambda h: "g000999-" + "x" * 200 in h.paths)
    writer.changed(["after.txt"])  # rotates first
    hints = read_until(reader, lambda h: "after.txt" in h.paths)
    assert hints.rescan and "after.txt" in hints.paths


def test_a_journal_deleted_and_made_anew_is_followed_with_a_rescan(tmp_path, follow):
    writer = JournalWriter(tmp_path)
    writer.beat()
    reader = follow()
    shutil.rmtree(tmp_path / JOURNAL.split("/")[0])  # the tester deleted the hidden folder
    assert read_until(reader, lambda h: h.rescan).rescan  # tail says the journal is gone
    writer.changed(["new.txt"])  # the watcher makes it again
    hints = read_until(reader, lambda h: h.paths)
    assert hints.paths == {"new.txt"}


def test_a_tail_that_ended_is_started_again_and_asks_for_a_rescan(tmp_path, follow, caplog):
    writer = JournalWriter(tmp_path)
    writer.beat()
    reader = follow()
    assert reader.process is not None
    reader.process.kill()
    assert read_until(reader, lambda h: h.rescan).rescan
    assert reader.process is None and "windows hints unavailable" in caplog.text
    writer.changed(["lost.txt"])  # while nobody follows: the rescan finds it
    time.sleep(reader.restart_due() - time.monotonic())
    assert read_until(reader, lambda h: h.rescan).rescan  # started again, with a rescan
    assert reader.process is not None
    writer.changed(["next.txt"])
    assert read_until(reader, lambda h: h.paths).paths == {"next.txt"}


@pytest.fixture
def watcher(tmp_path, share):
    started = WatcherProcess(tmp_path / "watch.json", share.backing)
    yield started
    started.stop()


def _synced(nfs_dir, name, content):
    path = nfs_dir / name
    return lambda: path.is_file() and path.read_bytes() == content


@pytest.mark.slow
def test_with_the_watcher_a_dropped_file_reaches_nfs_without_waiting_for_a_poll(
        share, nfs_dir, make_agent, watcher):
    agent = make_agent(interval=60).start()  # a poll cannot explain anything below
    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)
    for i in range(5):
        content = f"input {i}\n".encode()
        (share.backing / f"in-{i}.csv").write_bytes(content)
        wait_until(_synced(nfs_dir, f"in-{i}.csv", content), 3)
    (share.backing / "in-0.csv").unlink()
    wait_until(lambda: not (nfs_dir / "in-0.csv").exists(), 3)


@pytest.mark.slow
def test_with_the_watcher_an_edit_that_keeps_size_and_mtime_reaches_nfs_at_once(
        share, nfs_dir, make_agent, watcher):
    report = share.backing / "report.csv"
    report.write_bytes(b"total: 100\n")
    make_agent().run_once()
    time.sleep(RACY_SECONDS + 1)  # an mtime in an earlier second: only the content tells the edit
    agent = make_agent(interval=60).start()  # neither a poll nor the hash sweep comes in time
    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)

    before = report.stat()
    report.write_bytes(b"total: 200\n")
    os.utime(report, ns=(before.st_atime_ns, before.st_mtime_ns))  # as robocopy /COPY:DAT does
    wait_until(_synced(nfs_dir, "report.csv", b"total: 200\n"), 3)


@pytest.mark.slow
def test_a_killed_watcher_falls_back_to_polling_and_a_restarted_one_brings_hints_back(
        share, nfs_dir, make_agent, watcher):
    agent = make_agent(interval=1).start()
    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)

    watcher.kill()
    (share.backing / "while-down.txt").write_text("no hint for me\n")
    wait_until(lambda: agent.status()["windows_changes"] == "polling", STALE + 5)
    wait_until(_synced(nfs_dir, "while-down.txt", b"no hint for me\n"), 10)
    assert any(e["event"] == "windows changes" and e["mode"] == "polling" for e in agent.log_events())

    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)
    (share.backing / "back.txt").write_text("hinted again\n")
    wait_until(_synced(nfs_dir, "back.txt", b"hinted again\n"), 3)


@pytest.mark.slow
def test_a_watcher_killed_mid_burst_loses_nothing(share, nfs_dir, make_agent, watcher):
    agent = make_agent(interval=1).start()
    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)
    (share.backing / "burst").mkdir()
    for i in range(400):
        (share.backing / "burst" / f"f{i:03}.dat").write_bytes(f"{i}\n".encode() * 10)
        if i == 200:
            watcher.kill()
    wait_until(lambda: len(list((nfs_dir / "burst").glob("*.dat"))) == 400 if (
        nfs_dir / "burst").is_dir() else False, STALE + 30)
    for i in range(400):
        assert (nfs_dir / "burst" / f"f{i:03}.dat").read_bytes() == f"{i}\n".encode() * 10


@pytest.mark.slow
def test_a_watched_folder_rename_of_2000_files_is_a_rename_every_time(
        share, nfs_dir, make_agent, watcher):
    """Issue #19 case 3: its hints may come in pieces, in either order; it stays one rename."""
    folder = share.backing / "run-0"
    folder.mkdir()
    for i in range(2000):
        (folder / f"f{i:04}.dat").write_text(f"{i}\n")
    agent = make_agent(interval=60).start(wait=False)
    wait_until(lambda: len(list((nfs_dir / "run-0").glob("*.dat"))) == 2000, timeout=60)
    watcher.start()
    wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)

    for run in range(1, 6):
        before = len(agent.log_events())
        (share.backing / f"run-{run - 1}").rename(share.backing / f"run-{run}")
        wait_until(lambda r=run: not (nfs_dir / f"run-{r - 1}").exists()
                   and len(list((nfs_dir / f"run-{r}").glob("*.dat"))) == 2000, timeout=30)
        wait_until(lambda b=before: len(agent.log_events()) > b)  # the line follows the rename
        events = [e["event"].removesuffix(" (batch)") for e in agent.log_events()[before:]]
        assert "rename" in events and "copy" not in events and "delete" not in events, (run, events)
    assert agent.status()["held_deletions"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("first", ["new", "old"])
def test_a_rename_whose_hints_come_in_two_pieces_is_one_rename(share, nfs_dir, make_agent, first):
    """Issue #19 case 3, made exact: the journal says the new names and the old ones apart."""
    old, new = share.backing / "before", share.backing / "after"
    old.mkdir()
    for i in range(300):
        (old / f"f{i:03}.dat").write_text(f"{i}\n")
    agent = make_agent(interval=60).start(wait=False)
    wait_until(lambda: len(list((nfs_dir / "before").glob("*.dat"))) == 300, timeout=30)
    journal = JournalWriter(share.backing)
    beating = True

    def beat():
        while beating:
            journal.beat()
            time.sleep(0.5)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        wait_until(lambda: agent.status()["windows_changes"] == "journal", 10)
        before = len(agent.log_events())
        old.rename(new)
        pieces = {"old": ["before", *(f"before/f{i:03}.dat" for i in range(300))],
                  "new": ["after", *(f"after/f{i:03}.dat" for i in range(300))]}
        second = "old" if first == "new" else "new"
        journal.changed(pieces[first], closed=pieces[first])
        time.sleep(0.6)  # longer than the settle time: the first piece is acted on alone
        journal.changed(pieces[second], closed=pieces[second])
        wait_until(lambda: not (nfs_dir / "before").exists()
                   and len(list((nfs_dir / "after").glob("*.dat"))) == 300, timeout=20)
        wait_until(lambda: any(e["event"] == "rename" for e in agent.log_events()[before:]))
        events = [e["event"].removesuffix(" (batch)") for e in agent.log_events()[before:]]
        assert "copy" not in events and "delete" not in events, events
    finally:
        beating = False
        beater.join()


def test_events_the_watcher_lost_become_a_rescan_hint_at_once(tmp_path):
    """Issue #24: watchdog 7 reports an overflow as EventsLostEvent; the agent must not wait."""
    from watchdog.events import EventsLostEvent

    from filesim.watch import Watcher

    folder = tmp_path / "nas"
    folder.mkdir()
    (folder / ".filesim-share").write_text("id: x\n")
    watcher = Watcher([folder])
    watcher.handler(folder.resolve()).dispatch(EventsLostEvent(str(folder.resolve()), is_directory=True))
    watcher._flush()
    [record] = [json.loads(line) for line in (folder / JOURNAL).read_text().splitlines()]
    assert record["rescan"] is True and "events lost" in record["reason"]


def test_a_watched_folder_deleted_and_made_again_is_watched_again(tmp_path):
    """A tester deletes a NAS folder (or the data root) and `invoke setup` makes it again."""
    import shutil
    import threading

    from filesim.watch import Watcher

    folder = tmp_path / "nas"
    folder.mkdir()
    (folder / ".filesim-share").write_text("id: x\n")
    watcher = Watcher([folder])
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        wait_until(lambda: (folder / JOURNAL).exists())
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / ".filesim-share").write_text("id: y\n")
        wait_until(lambda: (folder / JOURNAL).exists() and "rescan" in (folder / JOURNAL).read_text(),
                   timeout=10)
        (folder / "after.txt").write_text("dropped into the new folder\n")
        wait_until(lambda: "after.txt" in (folder / JOURNAL).read_text(), timeout=5)
    finally:
        watcher.request_stop()
        runner.join()
