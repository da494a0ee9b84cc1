r"""For the test suites of systems under test: wait until filesim's NAS servers are in step.

A test drops input files, runs the system, reads its outputs; instead of sleeping, it asks::

    from filesim.testing import wait_synced

    def test_the_daily_report(system):
        shutil.copy("fixtures/orders.csv", r"C:\simulator-data\nas-input-1")
        wait_synced("nas-input-1")        # the file is on NFS now
        system.run_daily_batch()
        wait_synced("nas-output-1")       # what it wrote over NFS is in the folder now
        assert Path(r"C:\simulator-data\nas-output-1\report.csv").exists()

It is ``invoke wait-synced`` as a function: engine, values and data root as the tasks take
them (``FILESIM_ENGINE``, ``FILESIM_DATA_ROOT`` and the default values otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

from filesim import toolkit


class NotSynced(AssertionError):
    """Not every NAS was in step before the timeout; the message names what is pending."""


def wait_synced(*nas: str, timeout: float = 60.0, engine: str | None = None,
                values: Sequence[str] = (), data_root: str | None = None) -> float:
    """Wait until what changed on either side of these NAS (default all) is on both sides.

    Returns the seconds it took; raises NotSynced at the timeout, naming what is pending.
    """
    result = toolkit.wait_synced(toolkit.engine(engine, values, [], data_root), nas, timeout)
    if not result["ok"]:
        raise NotSynced(toolkit.wait_report(result))
    return float(result["seconds"])
