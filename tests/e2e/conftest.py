"""The engine contract suite: the same end-to-end checks on every engine that can run here.

podman runs wherever podman works (CI included); minikube runs whenever its kube context
answers; kubernetes runs on the cluster FILESIM_KUBE_CONTEXT names, when it answers. Each engine
gets the suite's own deployment (tests/e2e/values.yaml: its own names, namespace and ports),
torn down at the end even on failure; a tester's default deployment is never touched. With
FILESIM_REQUIRE_E2E=1 (set by .ci/run) an unusable podman fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from suite import E2E_VALUES, podman_pods

from filesim import toolkit, values
from filesim.engines import ENGINES, EngineError
from filesim.engines.kubernetes import context_reachable
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
    if name == "kubernetes":
        context = os.environ.get("FILESIM_KUBE_CONTEXT")
        if not context:
            return "FILESIM_KUBE_CONTEXT names no cluster to run the suite on"
        return None if context_reachable(context) else f"no reachable kube context {context!r}"
    profile = values.load([]).minikube.profile
    return None if context_reachable(profile) else f"no reachable kube context {profile!r}"


@pytest.fixture(scope="session")
def testers_deployment(tmp_path_factory):
    """The tester's default deployment as the suite found it (one is started if none runs)."""
    if _available("podman"):
        pytest.skip("podman is not usable")
    started = None
    if not podman_pods("filesim"):
        started = toolkit.engine("podman", [], [], str(tmp_path_factory.mktemp("testers-data")))
        started.setup(print)
        started.apply(print)
        started.wait_ready(180, print)
    engine = started or toolkit.engine("podman", [], [], None, need_data_root=False)
    before = podman_pods("filesim")
    yield engine, before
    if started is not None:
        started.destroy(print, force=True)


@pytest.fixture(scope="session", params=list(ENGINES))
def engine(request, data_root):
    """The suite's deployment on one engine, destroyed even on failure."""
    missing = _available(request.param)
    if missing:
        if request.param == "podman" and os.environ.get("FILESIM_REQUIRE_E2E") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    if request.param == "podman":
        request.getfixturevalue("testers_deployment")  # recorded before the suite deploys
    eng = toolkit.engine(request.param, [str(E2E_VALUES)], [], str(data_root),
                         os.environ.get("FILESIM_KUBE_CONTEXT") if request.param == "kubernetes" else None)
    try:
        if request.param == "podman":
            # An earlier run killed midway (a machine restart) may have left its pods and
            # exports; before setup the fresh data root has no markers: nothing is flushed in.
            eng.destroy(print, force=True)
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
        eng.destroy(print, force=True)
        toolkit.stop_watcher(eng)  # started by the tests that run `invoke deploy`

