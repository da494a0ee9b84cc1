"""The host side touches only what its own deployment made (issue #20): processes and paths.

Real processes and real files: a stale watcher state naming another process, the watcher
started and stopped by the tasks, paths built from values.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import wait_until

from filesim import PROJECT_ROOT, procs
from filesim.errors import BadInput
from filesim.paths import inside
from filesim.watch import STATE_FILE, info, start_background, stop_background

INVOKE = str(Path(sys.executable).with_name("invoke"))


def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "nas-backup").mkdir(parents=True)
    (root / "nas-backup" / ".filesim-share").write_text("id: x\n")
    return root


@pytest.mark.parametrize("recorded", ["an old watcher's identity", "the process's own identity"])
def test_a_stale_watcher_state_naming_another_process_leaves_it_alive(tmp_path, recorded):
    root = data_root(tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        identity = "start:1" if recorded.startswith("an old") else procs.identity(sleeper.pid)
        (root / STATE_FILE).write_text(json.dumps({
            "pid": sleeper.pid, "identity": identity, "token": "0123456789abcdef",
            "updated": time.time(), "folders": [str(root / "nas-backup")]}))

        result = subprocess.run([INVOKE, "watch", "--stop", "--engine", "podman", "--data-root",
                                 str(root)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                                timeout=60)

        assert result.returncode == 0, result.stderr
        assert f"removed a stale host watcher state (pid {sleeper.pid} is not filesim's host watcher)" \
            in result.stderr
        time.sleep(0.5)
        assert sleeper.poll() is None, "an unrelated process was signalled"
        assert not (root / STATE_FILE).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_watcher_the_tasks_start_is_known_by_its_token_and_stopped(tmp_path):
    root = data_root(tmp_path)
    started = start_background(root, [root / "nas-backup"])
    try:
        assert started.running and started.ours and len(started.token) == 16
        assert started.token in (procs.command_line(started.pid) or [])
        assert started.identity == procs.identity(started.pid)
    finally:
        said = stop_background(root)
    assert said == f"stopped the host watcher of {root}"
    wait_until(lambda: procs.identity(started.pid) is None, 10)
    assert not info(root).running


def test_a_process_is_ours_only_with_its_identity_and_token(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--token-abc"])
    try:
        wait_until(lambda: "--token-abc" in (procs.command_line(child.pid) or []))  # exec'd
        identity = procs.identity(child.pid)
        assert identity is not None and identity.startswith("start:")
        assert procs.is_ours(child.pid, identity, "--token-abc")
        assert not procs.is_ours(child.pid, identity, "another-token")
        assert not procs.is_ours(child.pid, "start:1", "--token-abc")
        assert not procs.kill(child.pid, "start:1", "--token-abc") and child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert procs.identity(child.pid) is None  # gone (or a zombie: no process to signal)


@pytest.mark.parametrize("parts", [("..", "x"), ("ok", "../../etc"), ("/etc",), ("a/b",), ("",),
                                   ("link", "x")])
def test_a_path_built_from_values_outside_its_root_is_refused(tmp_path, parts):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)  # a link planted below the root
    with pytest.raises(BadInput, match="outside"):
        inside(tmp_path / "root", *parts)
    assert inside(tmp_path / "root", "filesim", "nas-backup") == tmp_path / "root" / "filesim" / "nas-backup"


@pytest.mark.parametrize("folder", ["{tmp}/victim", "/var/lib/filesim/../../{tmp}/victim",
                                    "/var/lib/filesim/ns", "/var/lib/filesim/ns/nas/deeper"])
def test_the_export_script_refuses_a_folder_outside_its_root(tmp_path, folder):
    victim = tmp_path / "victim"
    (victim / "state").mkdir(parents=True)
    (victim / "export.img").write_text("not an export\n")
    target = folder.format(tmp=str(tmp_path).lstrip("/"))
    target = target if target.startswith("/") else f"/{target}"
    result = subprocess.run(["sh", str(PROJECT_ROOT / "scripts" / "export-fs.sh"), "remove", target],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "refusing to touch it" in result.stderr
    assert (victim / "export.img").exists() and (victim / "state").is_dir()


def test_of_two_background_processes_on_one_state_the_later_one_stays(tmp_path):
    """A watcher whose state went with its deleted folder meets the one deploy started after."""
    from filesim.background import Beat

    state = tmp_path / "state.json"
    older = Beat(state, "old-token")
    newer = Beat(state, "new-token")
    newer.started = older.started + 1
    assert older.write() is False  # alone: it writes
    assert newer.write() is False  # the later one overwrites it
    assert older.write() is True  # the older one sees it was replaced: it stops
    assert json.loads(state.read_text())["token"] == "new-token"
