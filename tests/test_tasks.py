"""The tasks as a user runs them: every error is one line with its documented exit code.

Only errors that need no running NAS are here (the e2e suite covers the rest); each runs the
real `invoke` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from filesim import PROJECT_ROOT
from filesim.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT

INVOKE = str(Path(sys.executable).with_name("invoke"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKE, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unknown_synth_target_names_the_choices(tmp_path):
    result = run("synth", "--target", "bogus", "--out", str(tmp_path / "out"))
    assert result.returncode == EXIT_BAD_INPUT
    assert "kubernetes, podman" in one_line_error(result)


def test_a_missing_data_root_is_named_not_reported_ready():
    result = run("status", "--engine", "podman", "--data-root", "/nonexistent")
    assert result.returncode == EXIT_ENVIRONMENT
    assert "/nonexistent does not exist" in one_line_error(result)


@pytest.mark.parametrize("task", [["check-sync", "nas-nope"], ["wait-synced", "nas-nope"],
                                  ["versions", "nas-nope"]])
def test_a_json_error_is_json(tmp_path, task):
    result = run(*task, "--json", "--engine", "podman", "--data-root", str(tmp_path))
    assert result.returncode == EXIT_BAD_INPUT
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and "nas-nope" in answer["error"]
    assert "Traceback" not in result.stderr


def test_bad_values_exit_2_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nasServers: [{name: nas-backup, sync: {interval: -1}}]\n")
    result = run("synth", "--values", "values/default.yaml", "--values", str(bad),
                 "--out", str(tmp_path / "out"))
    assert result.returncode == EXIT_BAD_INPUT
    assert "nasServers[3].sync.interval" in result.stderr and "Traceback" not in result.stderr


def test_restore_with_a_time_that_is_not_one_says_how_to_write_it(tmp_path):
    result = run("restore", "nas-backup", "x.csv", "--at", "yesterday", "--engine", "podman",
                 "--data-root", str(tmp_path))
    assert result.returncode == EXIT_BAD_INPUT
    assert "2026-11-30T07:15:00" in one_line_error(result)


ALL_DISABLED = [f"--set=nasServers[{i}].enabled=false" for i in range(7)]
# (arguments, what the one line must say): each is bad input, refused before anything is done.
BAD_INPUTS = [
    (["synth", "--values", "/tmp"], "is a folder, not a values file"),
    (["synth", "--set", "nasServers=5"], "nasServers: 5 is not of type array; write an array here"),
    (["synth", *ALL_DISABLED], "every NAS is disabled"),
    (["synth", "--set", "namespace="], "namespace: '' is not valid; use a DNS-1123 label"),
    (["synth", "--set", "namespace=../../tmp/x"], "namespace: '../../tmp/x' is not valid"),
    (["synth", "--set", "namePrefix=../"], "namePrefix: '../' is not valid"),
    (["synth", "--set", "nasServers[0].storage.sizeLimit=1k"], "give at least 16Mi"),
    (["synth", "--set", "nasServers[0].sync.interval=1e308"], "use a value <= 86400"),
    (["synth", "--out", "/etc/hostname"], "--out /etc/hostname is a file"),
    (["setup", "--engine", "podman", "--data-root", "/etc/hostname"],
     "--data-root /etc/hostname is a file"),
    (["deploy", "--engine", "podman", "--timeout", "abc"], "--timeout 'abc' is not a number"),
    (["deploy", "--engine", "podman", "--timeout", "-5"], "give a positive number of seconds"),
    (["wait-synced", ",", "--engine", "podman", "--timeout", "-5"], "',' names no NAS"),
    (["wait-synced", "all", "--engine", "podman", "--timeout", "-5"], "give a positive number"),
    (["check-sync", "nas-backup", "--engine", "podman", "--timeout", "0"], "positive number"),
    (["restore", "nas-backup", "x.csv", "--side", "both", "--engine", "podman"], "--side 'both'"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUTS, ids=[" ".join(a[:3]) for a, _ in BAD_INPUTS])
def test_every_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    before = sorted(tmp_path.iterdir())
    extra = [] if "--out" in args or args[0] != "synth" else ["--out", str(tmp_path / "out")]
    result = run(*args, *extra)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert says in one_line_error(result)
    assert sorted(tmp_path.iterdir()) == before  # nothing written first
