"""The agent's settings and their defaults (the values schema's defaults agree: a test proves it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """How one agent runs.

    Attributes:
        nfs: the export folder (local; inotify works).
        windows: the NAS's Windows folder (9p; polled).
        state: folder for the state database, status.json and requests.
        mode: bidirectional, to-nfs or to-windows.
        interval: seconds between polls of the Windows side.
        settle: seconds a changed file must stay unchanged before it is copied.
        max_delay: a file changing for longer than this is published anyway (a consistent
            version: the stable prefix of a growing file, or a version whole while copied).
        max_delete_fraction: a burst of deletions of more than this share of the files is held.
        max_delete_rate: more files deleted than this within 10 seconds are held.
        windows_names: ``encode`` names Windows cannot hold, or ``report`` them as problems.
        windows_root: the share's root as Windows names it (for the 260-character limit).
        versions_days, versions_max_bytes: how long and how much of the kept versions stay.
        hash_sweep_minutes: a full pass hashing the Windows side takes at least this long
            (0: off); ``hash_sweep_mb_per_second`` caps the reading.
        log_level: ``info`` (actions, problems, a summary a minute) or ``debug`` (every pass).
    """

    nfs: Path
    windows: Path
    state: Path
    mode: str
    interval: float = 2.0
    settle: float = 0.5
    max_delay: float = 5.0
    max_delete_fraction: float = 0.5
    max_delete_rate: int = 100
    windows_names: str = "encode"
    windows_root: str = "C:\\simulator-data\\nas"
    versions_days: float = 7.0
    versions_max_bytes: int = 2**30
    hash_sweep_minutes: float = 30.0
    hash_sweep_mb_per_second: float = 4.0
    log_level: str = "info"
