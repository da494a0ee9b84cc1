"""One task at a time per deployment: deploy, destroy and setup hold the deployment's lock.

A file lock (flock; on Windows msvcrt) in the deployment's own folder. It is released when its
holder ends, however it ends, so it never goes stale; a task that finds it held says who holds
it and waits.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filesim.errors import UserError

WAIT = 900.0
SAY_EVERY = 10.0


@contextlib.contextmanager
def hold(path: Path, what: str, progress: Callable[[str], None], wait: float = WAIT) -> Iterator[None]:
    """Hold the lock at ``path`` while the body runs; wait (saying so) while another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline, said = time.monotonic() + wait, 0.0
        while not _try_lock(fd):
            now = time.monotonic()
            holder = _holder(fd)
            if now > deadline:
                raise UserError(f"{what}: another filesim task ({holder}) still holds {path} after "
                                f"{wait:.0f}s; wait for it to end, then run this again")
            if now - said >= SAY_EVERY:
                progress(f"{what}: waiting for another filesim task ({holder}) to finish")
                said = now
            time.sleep(0.2)
        if sys.platform != "win32":  # Windows locks the bytes: nobody could read them
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv[1:3])}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, AttributeError):
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
    return "pid unknown"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - the tester's Windows machine
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
