"""kill -9 of the agent at random points during a 500-file burst: nothing lost, torn or left."""

from __future__ import annotations

import hashlib
import random
import threading
import time

from harness import temp_files, tree_files, wait_until

FILES = 500
KILLS = 20


def content(name: str) -> bytes:
    """Deterministic content of a file, 1 B to ~1 MB, so a torn copy is detectable."""
    seed = int(hashlib.md5(name.encode()).hexdigest()[:8], 16)
    return random.Random(seed).randbytes(1 + seed % 1_000_000)


def test_kill_9_during_burst_loses_nothing(share, nfs_dir, make_agent):
    agent = make_agent()
    expected = {}
    for i in range(FILES):
        folder = f"batch{i % 7}"
        name = f"{folder}/file{i:03}.bin"
        expected[name] = content(name)
    names = list(expected)
    random.Random(1).shuffle(names)
    (nfs_dir / "batch0").mkdir()  # some folders pre-exist, others are created mid-burst

    def burst():
        for i, name in enumerate(names):
            root = nfs_dir if i % 2 else share.backing  # both sides write at once
            (root / name).parent.mkdir(exist_ok=True)
            (root / name).write_bytes(expected[name])
            time.sleep(0.02)

    writer = threading.Thread(target=burst)
    writer.start()
    rng = random.Random(20)
    for _ in range(KILLS):
        agent.start(wait=False)
        time.sleep(rng.uniform(0.2, 0.9))  # start-up takes ~0.15 s; then it copies the backlog
        agent.kill()
    writer.join()
    agent.start()

    wait_until(lambda: len(tree_files(share.backing)) == FILES == len(tree_files(nfs_dir)),
               timeout=60)
    assert tree_files(nfs_dir) == expected
    assert tree_files(share.backing) == expected
    assert not temp_files(nfs_dir, share.backing)
    assert (agent.status() or {}).get("conflicts") == 0
    cleaned = sum(e["count"] for e in agent.log_events() if e["event"] == "removed temp files")
    print(f"temp files left by kills and removed at restart: {cleaned}")
