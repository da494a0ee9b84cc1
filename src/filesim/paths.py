"""Paths built from values stay below their root: every host folder filesim writes or removes.

Names in values are DNS-1123 labels (the schema says so), and every path built from them is
checked here once more, resolved where it is on this machine, before anything is written or
removed (scripts/export-fs.sh checks its folder the same way on the node).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from filesim.errors import BadInput


def inside(root: Path, *parts: str) -> Path:
    """``root/part/...`` on this machine, resolved; BadInput if it would lead outside ``root``.

    Each part must be one plain name (no ``/``, ``.``, ``..``); symlinks are resolved, so a
    link planted below ``root`` cannot lead elsewhere either.
    """
    _plain(root, parts)
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise BadInput(f"{'/'.join(parts)!r} leads outside {root} (a link?): refusing to use it")
    return path


def node_path(root: str, *parts: str) -> str:
    """``root/part/...`` on a node (POSIX, not resolvable from here); BadInput if outside."""
    _plain(Path(root), parts)
    return str(PurePosixPath(root, *parts))


def _plain(root: Path, parts: tuple[str, ...]) -> None:
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise BadInput(f"{'/'.join(parts)!r} would lead outside {root}: each part must be "
                           "one folder name (the values' names are DNS-1123 labels)")
