r"""For the test suites of systems under test: wait until NAS servers are in step; make one fail.

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

``fault`` is ``invoke fault`` as a context manager that heals the NAS on the way out::

    from filesim.testing import fault

    def test_the_batch_survives_a_full_output_share(system):
        with fault("nas-output-1", "full"):
            system.run_daily_batch()
            assert system.alerts() == ["nas-output-1: no space left"]
        wait_synced("nas-output-1")       # healed: what it retried is on both sides
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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


@contextlib.contextmanager
def fault(nas: str, kind: str, *, seconds: float | None = None, engine: str | None = None,
          values: Sequence[str] = (), data_root: str | None = None, **options: float
          ) -> Iterator[None]:
    """Make ``nas`` fail as ``kind`` (down, hang, readonly, full, slow, flaky) while inside.

    ``slow`` takes ``ms=``, ``flaky`` takes ``p=`` (``fault(nas, "slow", ms=500)``); the fault
    is cleared on the way out, and ends by itself after ``seconds`` if given.
    """
    from filesim.errors import BadInput
    from filesim.nas import faults

    value = options.pop("ms", None) if kind == "slow" else options.pop("p", None)
    if options:
        raise BadInput(f"fault {kind} takes no {', '.join(options)}: slow takes ms=, flaky p=")
    try:
        wanted = faults.parse(kind if value is None else f"{kind}={value}")
        duration = faults.check_duration(seconds) if seconds is not None else None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    selected = toolkit.engine(engine, values, [], data_root)
    selected.set_fault(selected.server(nas).name, wanted, duration)
    try:
        yield
    finally:
        selected.set_fault(nas, None)
