"""Shared fixtures: a 9p-like share, an NFS-side folder and the sync agent as a real process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from harness import AgentProcess, NinePShare


@pytest.fixture
def share(request, tmp_path: Path):
    """A FUSE mount behaving like minikube's 9p share; tests write in ``share.backing``.

    Tests marked ``ntfs`` get NTFS's rules too (case, names, locks; tests/support/ninepfs.py);
    ``listing_drops(p)`` makes listings leave out a fraction ``p`` of entries.
    """
    drops = request.node.get_closest_marker("listing_drops")
    mounted = NinePShare(tmp_path, ntfs=request.node.get_closest_marker("ntfs") is not None,
                         drop_rate=drops.args[0] if drops else 0.0)
    yield mounted
    mounted.stop()


@pytest.fixture
def nfs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "export"
    path.mkdir()
    return path


@pytest.fixture
def make_agent(tmp_path: Path, nfs_dir: Path, share: NinePShare):
    """Build agents for the test's folders; every started agent is stopped at teardown."""
    agents: list[AgentProcess] = []

    def make(mode: str = "bidirectional", **options) -> AgentProcess:
        agent = AgentProcess(nfs_dir, share.mount, tmp_path / "state", mode,
                             tmp_path / "agent.log", **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop(timeout=10)


@pytest.fixture
def snapshot_json(snapshot):
    """Snapshots stored as JSON files under tests/__snapshots__/."""
    from syrupy.extensions.json import JSONSnapshotExtension

    return snapshot.use_extension(JSONSnapshotExtension)
