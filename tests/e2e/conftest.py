"""The live engine for the end-to-end suite: the default 7-NAS topology, torn down at the end.

With FILESIM_REQUIRE_E2E=1 (set by .ci/run) a missing engine fails instead of skipping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from filesim import toolkit
from filesim.engines import EngineError
from filesim.run import Runner


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.podman)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simulator-data")


@pytest.fixture(scope="session")
def engine(data_root):
    """The default topology deployed on the available engine, destroyed even on failure."""
    from filesim.engines import podman

    if not podman.usable(Runner()):
        message = "no container engine: install podman (scripts/install.sh)"
        if os.environ.get("FILESIM_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    eng = toolkit.engine(None, [], [], str(data_root))
    try:
        eng.setup(print)
        started = time.monotonic()
        eng.apply(print)
        eng.wait_ready(120, print)
        print(f"deploy of {len(eng.servers())} NAS servers to all-ready: "
              f"{time.monotonic() - started:.1f}s")
        yield eng
    except EngineError as exc:
        pytest.fail(str(exc))
    finally:
        eng.destroy(print)
