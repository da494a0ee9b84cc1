"""Carrying actions out with crash-safe steps: copies, merges, deletions, state last."""

from __future__ import annotations

import errno
import logging
import time

from filesim.sync import names
from filesim.sync.items import (
    ECHO_SECONDS,
    MARKER_EVERY,
    REFUSED,
    Item,
    conflict_name,
    other_side,
    racy,
)
from filesim.sync.plan import NFS, WINDOWS, Action, Change, Do, classify
from filesim.sync.state import Entry, agreed_entry
from filesim.sync.tree import (
    Blocked,
    DestinationChanged,
    Kind,
    NotAFile,
    SideUnavailable,
    Sig,
    SourceChanged,
)

_DIR = Sig(Kind.DIR, 0, 0, 0, 0, False)


class Applier:
    """The reconciler's part that acts (a mixin: see Reconciler)."""

    # -- acting ------------------------------------------------------------------------------

    def _failed(self, item: Item, exc: Exception, action: Action | None) -> None:
        """Turn a failure into a retry (a racing change) or the path's problem; never a crash."""
        if isinstance(exc, SideUnavailable):
            raise exc
        if isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.ENOTCONN):
            raise SideUnavailable(f"{exc}") from exc
        if isinstance(exc, SourceChanged | DestinationChanged | FileExistsError | NotAFile):
            self.log.debug("retry", extra={"path": names.display(item.path),
                                           "why": type(exc).__name__})
            if isinstance(exc, DestinationChanged) and action is not None and action.dest == WINDOWS:
                # Changed there, maybe invisibly (same size and mtime over 9p): a conflict next.
                self.forced.add(item.path)
            self._touch_pending(item.path)
            return
        side = (action.dest or action.source) if action is not None and (
            action.dest or action.source) else NFS
        if isinstance(exc, Blocked):
            self.problems.report(side, item.path, f"not synced: {exc.strerror}", policy=True)
        elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC and side == NFS:
            self.problems.report(side, item.path, self.trees[NFS].full())  # bytes or inodes
        elif isinstance(exc, OSError):
            self.problems.report(side, item.path, REFUSED.get(exc.errno or 0, exc.strerror or str(exc)))
        else:
            self.log.exception("unexpected", extra={"path": names.display(item.path)})
            self.problems.report(side, item.path, f"unexpected {type(exc).__name__}: {exc}")

    def _run(self, item: Item, action: Action) -> None:
        if action.do is Do.FORGET:
            self.state.drop(item.path)
            self.problems.clear_notice(item.path)
        elif action.do is Do.COPY:
            self._copy(item, action.source, action.dest, busy=action.note == "busy")
            if action.note == "edit-wins":
                self.report.conflict(path=names.display(item.path), kind="delete-vs-edit",
                                     kept=action.source)
                self.log.warning("edit wins over delete", extra={"path": names.display(item.path),
                                                                 "kept": action.source})
        elif action.do is Do.MERGE:
            self._merge(item)
        elif action.do is Do.DISOWN:
            entry = self.state.get(item.path)
            assert entry is not None and item.nfs is not None and item.windows is not None
            self._agree(item.path, agreed_entry(item.win, item.nfs, item.windows, None, by_agent=False))
        elif action.do is Do.KEEP_BOTH:
            self._save_nfs_version_beside(item)
        elif action.do is Do.NOT_SYNCED:
            self.pending.pop(item.path, None)
            self.problems.report(action.source, item.path, f"not synced: {action.note}", policy=True,
                                 unsynced="symlink" not in action.note and "special" not in action.note)
            return
        self.pending.pop(item.path, None)
        self.problems.resolve(item.path)

    def _copy(self, item: Item, source: str, dest: str, *, busy: bool = False) -> None:
        src_sig, dst_sig = item.sig(source), item.sig(dest)
        assert src_sig is not None
        started = self.clock()
        tree = self.trees[dest]
        entry = self.state.get(item.path)
        if dst_sig is not None and dst_sig.is_dir != src_sig.is_dir:
            self._clear_other_type(item, dest, dst_sig, entry)
            dst_sig = None
        if src_sig.is_dir:
            new = tree.mkdir(item.name(dest))
            sha = None
        elif entry is not None and dst_sig is not None and self._same_content(item, source, entry):
            new = dst_sig if dst_sig.readonly == src_sig.readonly else tree.set_readonly(
                item.name(dest), src_sig.readonly)
            sha = entry.sha
        else:
            copied = tree.copy_from(self.trees[source], item.name(source), src_sig,
                                    dest=item.name(dest), dest_expected=dst_sig,
                                    dest_sha=entry.sha if entry is not None else None, busy_ok=busy,
                                    progress=self._copying)
            new, sha, src_sig = copied.dest, copied.sha, copied.source
            self.report.copied += 1
            self._log_action(item.path, source, dest, src_sig, started, "copy")
        if source == NFS and item.path in self.trees[NFS].linked:
            self.links_changed = True
        nfs, windows = (src_sig, new) if source == NFS else (new, src_sig)
        if dest == WINDOWS:
            self._echo(item.path)
        self._agree(item.path, agreed_entry(item.win, nfs, windows, sha, by_agent=dest == WINDOWS))
        self.forced.discard(item.path)

    def _copying(self, size: int) -> None:
        """Bytes copied as a copy goes (a big file's progress shows while it is copied)."""
        self.report.copied_bytes += size
        self.on_progress()

    def _echo(self, path: str) -> None:
        """Note that the agent just wrote the Windows copy of ``path`` (its hints are echoes)."""
        now = self.clock()
        if len(self.echoes) >= 10_000:
            self.echoes = {p: t for p, t in self.echoes.items() if now - t < ECHO_SECONDS}
        self.echoes[path] = now

    def _same_content(self, item: Item, source: str, entry: Entry) -> bool:
        """Whether a changed source still holds the agreed content (a chmod, a touch -r)."""
        src = item.sig(source)
        if src is None or not src.is_file or entry.is_dir or src.size != entry.size or not entry.sha:
            return False
        try:
            return self.trees[source].hash(item.name(source)) == entry.sha
        except OSError:
            return False

    def _clear_other_type(self, item: Item, dest: str, dst_sig: Sig, entry: Entry | None) -> None:
        """Make way for a file where a folder is (or the reverse) on ``dest``.

        What the destination holds is removed only if it is the agreed version (a Windows file
        is kept among the versions); anything changed there is renamed to a conflict copy.
        """
        tree, name = self.trees[dest], item.name(dest)
        unchanged = entry is not None and classify(dst_sig, entry, dest) is Change.UNCHANGED
        if unchanged and (not dst_sig.is_dir or not tree.listing(name)) and \
                tree.remove(name, dst_sig, entry.sha if dest == WINDOWS else None):
            return
        saved = conflict_name(item.path, dest, time.time())
        saved_name = saved if dest == NFS else (self.win_path(saved) or names.encode_path(saved))
        tree.rename(name, saved_name)
        self._moved_aside(item.path, saved)
        self.report.conflict(path=names.display(item.path), kind="type-changed",
                             kept=other_side(dest), saved_as=names.display(saved))
        self.log.warning("conflict", extra={"path": names.display(item.path), "kind": "type-changed",
                                            "saved_as": names.display(saved)})

    def _merge(self, item: Item) -> None:
        """Both sides changed: equal content agrees, else both versions survive on both sides."""
        nfs, windows = item.nfs, item.windows
        assert nfs is not None and windows is not None
        if nfs.is_dir and windows.is_dir:
            self._agree(item.path, agreed_entry(item.win, nfs, windows, None, by_agent=False))
            return
        if nfs.is_file and windows.is_file and nfs.size == windows.size:
            digest = self.trees[NFS].hash(item.path)
            if digest == self.trees[WINDOWS].hash(item.win):
                self._agree(item.path, agreed_entry(item.win, nfs, windows, digest, by_agent=False))
                self.forced.discard(item.path)
                return
        winner, loser = self._latest_change(item)
        saved = conflict_name(item.path, loser, time.time())
        saved_win = self.win_path(saved) or names.encode_path(saved)
        saved_names = {NFS: saved, WINDOWS: saved_win}
        loser_sig, winner_sig = item.sig(loser), item.sig(winner)
        assert loser_sig is not None and winner_sig is not None
        loser_tree, winner_tree = self.trees[loser], self.trees[winner]
        if loser_sig.is_dir or winner_sig.is_dir:
            # A file and a folder: the loser moves aside, the winner's type takes the name.
            loser_tree.rename(item.name(loser), saved_names[loser])
            self._moved_aside(item.path, saved)
            self.state.drop(item.path)
            self._copy(Item(item.path, item.win, item.nfs if winner == NFS else None,
                            item.windows if winner == WINDOWS else None), winner, loser)
            self.report.conflict(path=names.display(item.path), kind="type-changed", kept=winner,
                                 saved_as=names.display(saved))
        else:
            # The winner's version replaces the loser's, which is set aside in the same moment
            # (the name never goes missing); then the loser's version reaches the winner's side.
            won = loser_tree.copy_from(winner_tree, item.name(winner), winner_sig,
                                       dest=item.name(loser), dest_expected=loser_sig,
                                       set_aside=saved_names[loser])
            pair = (won.source, won.dest) if winner == NFS else (won.dest, won.source)
            self._agree(item.path, agreed_entry(item.win, *pair, won.sha, by_agent=winner == NFS))
            aside = loser_tree.stat(saved_names[loser])
            assert aside is not None
            kept = winner_tree.copy_from(loser_tree, saved_names[loser], aside, dest=saved_names[winner])
            pair = (kept.source, kept.dest) if loser == NFS else (kept.dest, kept.source)
            self._agree(saved, agreed_entry(saved_win, *pair, kept.sha, by_agent=winner == WINDOWS))
            self.report.copied += 2
            self.report.conflict(path=names.display(item.path), kind="both-changed", kept=winner,
                                 saved_as=names.display(saved))
        self.forced.discard(item.path)
        self.log.warning("conflict", extra={"path": names.display(item.path), "kept": winner,
                                            "saved_as": names.display(saved)})

    def _latest_change(self, item: Item) -> tuple[str, str]:
        """(winner, loser): the side whose change the agent saw last keeps the name.

        A change not recorded as pending is seen now. Changes first seen within a second of
        each other (e.g. both made while the agent was down) are ordered by mtime; Windows
        wins a tie.
        """
        record = self.pending.get(item.path)
        seen_nfs, seen_windows = (record.nfs, record.windows) if record else (None, None)
        now = time.time()
        n = seen_nfs.wall if seen_nfs else now
        w = seen_windows.wall if seen_windows else now
        if abs(n - w) <= 1.0:
            assert item.nfs is not None and item.windows is not None
            n, w = item.nfs.mtime_ns // 10**9, item.windows.mtime_ns // 10**9
        return (NFS, WINDOWS) if n > w else (WINDOWS, NFS)

    def _moved_aside(self, path: str, saved: str) -> None:
        """``path`` was renamed to ``saved`` on one side: both are looked at again next pass.

        What this batch saw below ``path`` is out of date: it is skipped, and its problems
        (a child blocked by the new type) are tried again.
        """
        self._aside.add(path)
        stale = set(self.problems.under(path)) - {path}
        self.problems.retry_now(stale)
        for rel in (saved, *stale):
            self._touch_pending(rel)

    def _save_nfs_version_beside(self, item: Item) -> None:
        """to-windows: a tester's Windows file is never replaced; the NFS version goes beside it."""
        assert item.nfs is not None and item.windows is not None
        saved = conflict_name(item.path, NFS, time.time())
        self.trees[WINDOWS].copy_from(self.trees[NFS], item.path, item.nfs,
                                      dest=self.win_path(saved) or names.encode_path(saved))
        self._agree(item.path, agreed_entry(item.win, item.nfs, item.windows, None, by_agent=False))
        self.report.conflict(path=names.display(item.path), kind="tester-file-kept",
                             saved_as=names.display(saved))
        self.log.warning("tester file kept", extra={"path": names.display(item.path),
                                                    "saved_as": names.display(saved)})

    def _agree(self, path: str, entry: Entry) -> None:
        """Record that both sides hold the same version of ``path``.

        A racy entry gets its content hash (read from the local NFS side): the racy check
        compares the Windows file against it.
        """
        if not entry.is_dir and racy(entry.win_mtime, time.time()):
            self.racy.add(path)
            if entry.sha is None:
                entry = entry._replace(sha=self.trees[NFS].hash(path))
        if path not in self.state and not entry.is_dir:
            self.guard.note_created()
        self.state.put(path, entry)
        for done in self.complete.values():
            done.discard(path)
        self._name_notice(path, entry.win)


    # -- deletions ---------------------------------------------------------------------------

    def release(self) -> int:
        """Let the deletions held now through at the next pass; return how many there are."""
        released = self.guard.release()
        self.problems.retry_now(self.guard.released)
        return released

    def _waiting_deletions(self, besides: dict[str, str]) -> int:
        """Deletions seen once and waiting for their second look (they belong to a burst)."""
        return sum(1 for path, r in self.pending.items() if path not in besides and r.deletion())

    def _deletion_waiting_below(self, folder: str) -> bool:
        """Whether a deletion below ``folder`` waits for its second look."""
        prefix = folder + "/"
        return any(path.startswith(prefix) and r.deletion() for path, r in self.pending.items())

    def _delete(self, deletions: list[tuple[Item, str]]) -> None:
        """Propagate confirmed deletions unless the mass-deletion guard holds them (guard.py).

        Before deletions from Windows go through, and every MARKER_EVERY of them, the share's
        marker is looked at: a NAS folder being deleted loses its marker at some point, and
        what is still queued then stays where it is.
        """
        guard = self.guard
        guard.held = {p for p in guard.held if p in self.state}  # gone on both sides since
        guard.released = {p for p in guard.released if p in self.state}
        if not deletions:
            return
        now = self.clock()
        files = {item.path: dest for item, dest in deletions
                 if not (item.sig(dest) or _DIR).is_dir}
        sources = sorted({other_side(dest) for _, dest in deletions})
        empty = [side for side in sources if self.trees[side].is_empty()]
        before = set(guard.held)
        allowed, held, why = guard.assess(
            now, set(files), tracked=self.state.files(), waiting=self._waiting_deletions(files),
            source_empty=bool(empty), source=empty[0] if empty else "")
        if held - before:
            self.log.error("deletions held", extra={"reason": why, "count": len(guard.held)})
        for path in held:
            self.pending.pop(path, None)  # held, not pending: the guard and its problem keep it
            dest = files[path]
            # Held on its way to NFS, a file is on the export only (a flush is not clean).
            self.problems.report(dest, path, f"deletion held: {why}; run `invoke release` to let "
                                 f"them through, or delete them on the {dest} side too",
                                 policy=True, unsynced=dest == NFS, quiet=True)
        # Folders go only with their files (a held file keeps its folder: remove() refuses).
        todo = sorted(((item, dest) for item, dest in deletions
                       if item.path in allowed or item.path not in files),
                      key=lambda d: d[0].path, reverse=True)
        done: set[str] = set()
        for count, (item, dest) in enumerate(todo):
            if dest == NFS and count % MARKER_EVERY == 0 and not self.share_ok():
                self.log.warning("deletions stopped", extra={
                    "reason": "the Windows share's marker is gone", "left": len(todo) - count})
                for rest, _ in todo[count:]:
                    self._touch_pending(rest.path)
                break
            started = self.clock()
            expected = item.sig(dest)
            entry = self.state.get(item.path)
            try:
                if expected is None or self.trees[dest].remove(
                        item.name(dest), expected, entry.sha if entry and dest == WINDOWS else None):
                    self.state.drop(item.path)
                    self.pending.pop(item.path, None)
                    self.problems.resolve(item.path)
                    self.problems.clear_notice(item.path)
                    self.guard.forget(item.path)
                    if expected is not None and not expected.is_dir:
                        done.add(item.path)
                    self.report.deleted += 1
                    self._log_action(item.path, other_side(dest), dest, None, started, "delete")
            except Exception as exc:
                self._failed(item, exc, Action(Do.DELETE, dest=dest))
        guard.propagated(now, done)

    def _log_action(self, path: str, source: str, dest: str, sig: Sig | None, started: float,
                    action: str) -> None:
        """One line per action at info, or, in a bulk batch, at debug and in its summary."""
        size = 0 if sig is None or sig.is_dir else sig.size
        direction = f"{source}->{dest}"
        if self._bulk is not None:
            done = self._bulk.setdefault((action, direction), [0, 0, []])
            done[0], done[1] = done[0] + 1, done[1] + size
            if len(done[2]) < 3:
                done[2].append(names.display(path))
            if not self.log.isEnabledFor(logging.DEBUG):
                return
        self.log.log(logging.DEBUG if self._bulk is not None else logging.INFO, action, extra={
            "direction": direction, "path": names.display(path), "bytes": size,
            "ms": round((self.clock() - started) * 1000, 1)})

    def _log_bulk(self) -> None:
        """The summary of a bulk batch: one line per action and direction."""
        bulk, self._bulk = self._bulk, None
        for (action, direction), (count, size, examples) in sorted((bulk or {}).items()):
            self.log.info(f"{action} (batch)", extra={"direction": direction, "count": count,
                                                      "bytes": size, "examples": examples})

