"""What the e2e tests share: the suite's own values, and invoke tasks run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from filesim import PROJECT_ROOT
from filesim.engines.podman import podman_runner
from filesim.run import Runner

E2E_VALUES = Path(__file__).with_name("values.yaml")


def invoke(engine, data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An invoke task on the suite's deployment."""
    return subprocess.run([str(Path(sys.executable).with_name("invoke")), *args,
                           "--engine", engine.name, "--values", str(E2E_VALUES),
                           "--data-root", str(data_root)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)


def podman_pods(namespace: str) -> dict[str, str]:
    """Pod name → id of one deployment's podman pods."""
    result = podman_runner(Runner())(["podman", "pod", "ps", "--filter",
                                      f"label=filesim.dev/deployment={namespace}", "--format", "json"],
                                     check=False, reads_only=True)
    return {p["Name"]: p["Id"] for p in json.loads(result.stdout or "[]")}
