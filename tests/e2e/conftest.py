"""The engine contract suite: the same end-to-end checks on every engine that can run here.

podman runs wherever podman works (CI included); minikube runs whenever its kube context
answers. Each engine gets the default 7-NAS topology, torn down at the end even on failure.
With FILESIM_REQUIRE_E2E=1 (set by .ci/run) an unusable podman fails instead of skipping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from filesim import toolkit, values
from filesim.engines import EngineError
from filesim.engines.minikube import context_reachable
from filesim.engines.podman import usable
from filesim.run import Runner


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simulator-data")


def _available(name: str) -> str | None:
    """None if the engine can run here, else why not."""
    if name == "podman":
        return None if usable(Runner()) else "podman is not usable: run scripts/install.sh"
    profile = values.load([]).minikube.profile
    return None if context_reachable(profile) else f"no reachable kube context {profile!r}"


@pytest.fixture(scope="session", params=["podman", "minikube"])
def engine(request, data_root):
    """The default topology deployed on one engine, destroyed even on failure."""
    missing = _available(request.param)
    if missing:
        if request.param == "podman" and os.environ.get("FILESIM_REQUIRE_E2E") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    # nas-output-2 gets a small export so filling it (test_security) is quick.
    eng = toolkit.engine(request.param, [], ["nasServers[5].storage.sizeLimit=32Mi"], str(data_root))
    try:
        if request.param == "podman":
            eng.setup(print)
        started = time.monotonic()
        eng.apply(print)
        eng.wait_ready(180, print)
        print(f"{eng.name}: deploy of {len(eng.servers())} NAS servers to all-ready: "
              f"{time.monotonic() - started:.1f}s")
        yield eng
    except EngineError as exc:
        pytest.fail(str(exc))
    finally:
        eng.destroy(print)
