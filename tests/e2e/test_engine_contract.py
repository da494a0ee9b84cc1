"""The engine contract: real pods, real NFS (libnfs), real Windows-side folders, on every engine."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from harness import wait_until
from suite import invoke

from filesim.engines import EngineError

NAS_SERVERS = ["nas-input-1", "nas-input-2", "nas-input-3", "nas-backup",
               "nas-output-1", "nas-output-2", "nas-output-3"]


@pytest.mark.parametrize("nas", NAS_SERVERS)
def test_check_sync(engine, data_root, nas):
    result = invoke(engine, data_root, "check-sync", nas, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["nas"] == nas and report["ok"] is True
    directions = report["directions"]
    assert directions["windows_to_nfs"]["status"] == "passed"
    expected = "skipped" if nas.startswith("nas-input") else "passed"
    assert directions["nfs_to_windows"]["status"] == expected


def test_status_reports_every_nas_ready(engine, data_root):
    result = invoke(engine, data_root, "status", "--json")
    assert result.returncode == 0, result.stderr
    states = json.loads(result.stdout)["servers"]
    assert [s["name"] for s in states] == NAS_SERVERS
    assert all(s["ready"] and s["agent"]["share_mounted"] for s in states)


def test_a_file_written_on_one_nas_is_visible_on_no_other(engine):
    engine.nfs_write("nas-output-1", "isolated.txt", b"only on output-1\n")
    wait_until(lambda: (engine.windows_folder("nas-output-1") / "isolated.txt").exists(), 30)
    time.sleep(2.5)
    for other in NAS_SERVERS:
        if other != "nas-output-1":
            assert not (engine.windows_folder(other) / "isolated.txt").exists()
            assert engine.nfs_read(other, "isolated.txt") is None


def test_20_mb_written_over_nfs_arrives_intact(engine):
    data = os.urandom(20 * 1024 * 1024)
    engine.nfs_write("nas-backup", "big.bin", data)
    target = engine.windows_folder("nas-backup") / "big.bin"
    wait_until(lambda: target.exists() and target.stat().st_size == len(data), 60)
    assert hashlib.md5(target.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()


def test_tester_file_in_output_folder_survives_and_appears_over_nfs(engine):
    dropped = engine.windows_folder("nas-output-2") / "tester-dropped.txt"
    dropped.write_text("the tester's file\n")
    wait_until(lambda: engine.nfs_read("nas-output-2", "tester-dropped.txt")
               == b"the tester's file\n", 30)
    time.sleep(5)  # several sync passes: the research's rsync --delete removed it within one
    assert dropped.read_text() == "the tester's file\n"


def test_input_nas_export_refuses_writes(engine):
    with pytest.raises(EngineError, match="NFS write to nas-input-1 failed"):
        engine.nfs_write("nas-input-1", "not-allowed.txt", b"x")
    assert not (engine.windows_folder("nas-input-1") / "not-allowed.txt").exists()


def test_logs_and_probe(engine, data_root):
    logs = invoke(engine, data_root, "logs", "nas-backup")
    assert logs.returncode == 0
    events = [json.loads(line)["event"] for line in logs.stdout.splitlines() if line.startswith("{")]
    assert "start" in events and "pass" not in events  # per-pass lines are at debug level
    probe = invoke(engine, data_root, "probe-windows", "nas-output-3")
    assert probe.returncode == 0, probe.stderr
    assert engine.paths("nas-output-3").windows in probe.stdout and "live" in probe.stdout


def test_files_written_over_nfs_survive_destroy_and_deploy(engine):
    engine.nfs_write("nas-output-3", "keep-me.csv", b"a,b\n1,2\n")
    wait_until(lambda: (engine.windows_folder("nas-output-3") / "keep-me.csv").exists(), 30)
    engine.nfs_write("nas-output-3", "written-at-the-last-moment.txt", b"flushed on stop\n")

    engine.destroy(print)
    engine.apply(print)
    engine.wait_ready(120, print)

    assert engine.nfs_read("nas-output-3", "keep-me.csv") == b"a,b\n1,2\n"
    assert engine.nfs_read("nas-output-3", "written-at-the-last-moment.txt") == b"flushed on stop\n"
