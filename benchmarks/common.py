"""What every benchmark shares: tools checked before measuring, and percentiles."""

from __future__ import annotations

import shutil
import sys


def require(*tools: str) -> None:
    """Stop with one line if a tool a benchmark or its baseline runs is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{sys.argv[0]}: needs {', '.join(missing)}, which is not installed: run "
                 f"scripts/install.sh (or apt-get install -y {' '.join(missing)})")


def fail(message: str) -> None:
    """Stop with one line: a baseline that errors is an error, never a figure."""
    sys.exit(f"{sys.argv[0]}: {message}")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile (nearest rank) of finite values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
