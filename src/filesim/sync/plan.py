"""The decision table: what one path needs, from what each side shows against the agreed version.

Pure: no I/O, no clock. The reconciler observes both sides, asks :func:`decide` and carries
the action out (reconcile.py); settling and the second look before a deletion wrap it there.
The bidirectional table in docs/design.md is rendered from :data:`BIDIRECTIONAL` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the plan does no I/O
    from filesim.sync.state import Entry
    from filesim.sync.tree import Sig

NFS, WINDOWS = "nfs", "windows"
MODES = ("bidirectional", "to-windows", "to-nfs")


class Change(Enum):
    """How one side of a path differs from the agreed version."""

    ABSENT = "absent"          # not there, and never agreed
    UNCHANGED = "unchanged"
    CHANGED = "changed"        # created, modified, or of another type
    DELETED = "deleted"


class Do(Enum):
    """What the reconciler does with a path."""

    COPY = "copy"              # source side's version to the destination side
    DELETE = "delete"          # on the destination side (guarded, kept on Windows)
    MERGE = "merge"            # both changed: equal content agrees, else both versions survive
    FORGET = "forget"          # gone on both sides
    DISOWN = "disown"          # to-windows: the tester changed the agent's copy, it is theirs now
    KEEP_BOTH = "keep-both"    # to-windows: the NFS version goes beside the tester's file
    NOT_SYNCED = "not-synced"  # a symlink or special file, on ``source``: reported, left alone


@dataclass(frozen=True)
class Action:
    """One decision: what to do, from which side to which, and a note for the report."""

    do: Do
    source: str = ""
    dest: str = ""
    note: str = ""


@dataclass(frozen=True)
class Facts:
    """What is known of one path: each side against the agreed version, and who wrote it."""

    nfs: Change
    windows: Change
    #: There is an agreed version (else each side is absent or changed: new).
    agreed: bool
    nfs_is_dir: bool = False
    windows_is_dir: bool = False
    #: The agreed Windows version is the agent's own copy (to-windows may replace it).
    by_agent: bool = False
    #: The first pass of a new deployment: a file only on Windows goes to NFS in every mode.
    seeding: bool = False


U, C, D, A = Change.UNCHANGED, Change.CHANGED, Change.DELETED, Change.ABSENT
TO_NFS, TO_WINDOWS = Action(Do.COPY, WINDOWS, NFS), Action(Do.COPY, NFS, WINDOWS)

#: bidirectional: (NFS, Windows) → the action (None: nothing to do).
BIDIRECTIONAL: dict[tuple[Change, Change], Action | None] = {
    (U, U): None,
    (U, C): TO_NFS,
    (U, D): Action(Do.DELETE, dest=NFS),
    (C, U): TO_WINDOWS,
    (C, C): Action(Do.MERGE),
    (C, D): Action(Do.COPY, NFS, WINDOWS, "edit-wins"),
    (D, U): Action(Do.DELETE, dest=WINDOWS),
    (D, C): Action(Do.COPY, WINDOWS, NFS, "edit-wins"),
    (D, D): Action(Do.FORGET),
    (A, A): None,
    (A, C): TO_NFS,
    (C, A): TO_WINDOWS,
}


def classify(sig: Sig | None, entry: Entry | None, side: str) -> Change:
    """Compare one side's current signature with the agreed entry."""
    if entry is None:
        return Change.ABSENT if sig is None else Change.CHANGED
    if sig is None:
        return Change.DELETED
    if sig.is_dir and entry.is_dir:
        return Change.UNCHANGED
    agreed = entry.nfs_sig() if side == NFS else entry.win_sig()
    return Change.UNCHANGED if sig == agreed else Change.CHANGED


def decide(mode: str, facts: Facts) -> Action | None:
    """The action one path needs in ``mode`` (None: nothing now)."""
    n, w = facts.nfs, facts.windows
    if n in (U, A) and w in (U, A):
        return None
    if mode == "bidirectional":
        return BIDIRECTIONAL[n, w]
    on_nfs, on_windows = n not in (A, D), w not in (A, D)
    if mode == "to-nfs":
        if on_windows:
            return TO_NFS
        return Action(Do.DELETE, dest=NFS) if on_nfs else Action(Do.FORGET)
    if mode != "to-windows":
        raise ValueError(f"unknown mode {mode!r}")
    if not on_nfs:
        if not on_windows:
            return Action(Do.FORGET)
        if facts.seeding and not facts.agreed:
            return TO_NFS
        # Only the agent's own copy, untouched since, is deleted; a tester's file stays.
        owned = facts.agreed and facts.by_agent and w is U
        return Action(Do.DELETE, dest=WINDOWS) if owned else Action(Do.FORGET)
    if w is C and n is not C:  # the tester changed the agent's copy: theirs now
        return Action(Do.DISOWN)
    writable = not on_windows or (facts.agreed and facts.by_agent and w is U)
    if writable or (facts.windows_is_dir and facts.nfs_is_dir):
        return TO_WINDOWS
    return Action(Do.KEEP_BOTH)


def describe(action: Action | None) -> str:
    """The action in the words of docs/design.md's table."""
    if action is None:
        return "\N{EN DASH}"
    arrow = "W→N" if action.source == WINDOWS else "N→W"
    return {Do.COPY: f"copy {arrow}" + (": the edit wins, reported" if action.note else ""),
            Do.DELETE: f"delete on {'NFS (guarded)' if action.dest == NFS else 'Windows (guarded, kept)'}",
            Do.MERGE: "equal content: agree; else conflict",
            Do.FORGET: "forget"}[action.do]


def bidirectional_table() -> str:
    """docs/design.md's decision table (agreed paths), as markdown."""
    sides = (U, C, D)
    rows = ["| NFS \\ Windows | " + " | ".join(w.value for w in sides) + " |",
            "|---|" + "---|" * len(sides)]
    rows += [f"| **{n.value}** | " + " | ".join(describe(BIDIRECTIONAL[n, w]) for w in sides) + " |"
             for n in sides]
    return "\n".join(rows)
