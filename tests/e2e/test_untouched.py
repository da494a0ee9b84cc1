"""The suite never touches a tester's running default deployment (issue #13).

Runs last (files run in name order): the tester's pods, recorded before the suite deployed its
own, are still the same pods. In CI the default deployment is the one scripts/install.sh
started; on a machine without one, the suite started one to prove it.
"""

from __future__ import annotations

from suite import podman_pods


def test_a_testers_default_deployment_survives_the_suite(engine, testers_deployment):
    tester, before = testers_deployment
    assert before, "no default deployment to watch"
    assert podman_pods("filesim") == before
    assert all(s.ready for s in tester.status())
