"""Big folders and full exports (issue #21): named, aggregated, no crash loop, bounded memory.

The export is a real ext4 filesystem with few inodes (loop-mounted, as scripts/export-fs.sh
makes them); the Windows side is the FUSE share. Speed and memory figures are benchmarks
(benchmarks/sync.py); these tests hold what must be true.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from filesim.sync.status import SEED_FILE, read_status


@pytest.fixture
def small_export(tmp_path):
    """An ext4 export of 4 MiB with 64 inodes (a few taken by the filesystem itself)."""
    image, mount = tmp_path / "export.img", tmp_path / "small-export"
    subprocess.run(["truncate", "-s", "4M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "64", "-I", "256", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    (mount / "lost+found").rmdir()
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_seed_into_an_export_out_of_inodes_names_it_once_and_ends_well(small_export, share,
                                                                          make_agent):
    for i in range(100):
        (share.backing / f"f{i:03}.csv").write_text(f"{i}\n")
    agent = make_agent()
    agent.nfs = small_export

    seed = agent.run_once()

    assert seed.returncode == 0, seed.stdout  # problems are status, not a crash loop
    status = agent.status()
    export = status["export"]
    assert export["files"] == export["files_max"] <= 64
    reasons = {p["reason"] for p in status["problems"]}
    assert reasons == {f"no free inodes (files {export['files']:,} of {export['files_max']:,}): "
                       "raise storage.maxFiles"}
    assert status["errors"] == 100 - len(list(small_export.iterdir()))
    lines = [json.loads(line) for line in seed.stdout.splitlines() if line.startswith("{")]
    said = [e for e in lines if e["event"] in ("problem", "problems")]
    assert len(said) == 1 and said[0]["count"] == status["errors"] and len(said[0]["examples"]) == 3


def test_the_seed_shows_its_progress_in_status_as_it_goes(share, nfs_dir, make_agent):
    for i in range(6000):
        folder = share.backing / f"d{i // 500}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04}.dat").write_bytes(os.urandom(512))
    agent = make_agent()
    seen = []
    with subprocess.Popen(agent.command(once=True), stdout=subprocess.DEVNULL) as seed:
        while seed.poll() is None:
            progress = read_status(agent.state, SEED_FILE)
            if progress and progress not in seen:
                seen.append(progress)
            time.sleep(0.05)
    assert seed.returncode == 0
    copying = [s for s in seen if s["phase"] == "copying"]
    assert copying and all(s["files_total"] == 6000 for s in copying)
    done = [s["files_done"] for s in copying]
    assert done == sorted(done) and len(set(done)) >= 2, done  # it moved while it ran
    final = read_status(agent.state, SEED_FILE)
    assert final["phase"] == "done" and final["files_done"] == 6000 and final["errors"] == 0
    assert 0 < final["peak_rss_mib"] < 128
    assert len(list(Path(nfs_dir).rglob("*.dat"))) == 6000
