"""Random users on both sides, the agent stepping between them and crashing anywhere (#23).

hypothesis drives a RuleBasedStateMachine: users create, edit, delete and rename files on
either side, move them into new folders and replace files by folders and back, while the
agent (in this process, on real folders) runs passes; a pass may crash at its Nth call into
the operating system from the trees or the versions, emulating kill -9: nothing more reaches
the state database, and a new agent starts on the same folders and state; or one call fails
(EACCES, EIO, ENOSPC...), which must cost a retry or a problem, never the agent. NtfsUsers does
the same with the Windows side on the NTFS-like FUSE share (case, names Windows cannot hold,
case-only renames). After a quiet flush: both sides are equal (on the share, under the names
the agent agreed), every content a user wrote and no user replaced or deleted is on the sides
(a conflict copy at worst, not only among the versions), nothing holds content nobody wrote,
no temp file is left and no problem remains.

The budget is FILESIM_MODEL_EXAMPLES (default 100, and a fifth of it on the share: ~20 s here,
derandomized so CI sees the same cases); with FILESIM_MODEL_SEED set the search is random
from that seed (`FILESIM_MODEL_EXAMPLES=20000 FILESIM_MODEL_SEED=1 pytest -s --timeout=0 ...`: the pace is
printed every 1,000 runs). A failure prints the shortest sequence of steps that shows it:
paste it into a regular test.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import gc
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from harness import NinePShare
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ninepfs import windows_can_hold

from filesim.sync import tree as tree_module
from filesim.sync import versions as versions_module
from filesim.sync.agent import Agent
from filesim.sync.names import alternative_of
from filesim.sync.settings import Settings
from filesim.sync.status import MARKER, marker_text
from filesim.sync.tree import TEMP_PREFIX

SIDES = ("nfs", "windows")
FILES = ("a.txt", "b.txt", "d/a.txt", "d/b.txt", "e/f/a.txt")
FOLDERS = ("d", "e", "e/f", "n")
# A crash leaves generators of the trees half-run; closing them later raises Crash again.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
EXAMPLES = int(os.environ.get("FILESIM_MODEL_EXAMPLES", "100"))
#: The NTFS share's examples go through FUSE: a fifth of the budget.
NTFS_EXAMPLES = max(1, EXAMPLES // 5)
#: Names NFS clients create that Windows cannot hold as they are (case collisions, `:`,
#: a device name, a trailing dot) or that collide in case with a folder.
NTFS_ONLY_ON_NFS = ("A.txt", "d/A.txt", "a:b.txt", "con.txt", "x.", "D/c.txt", "n/aux")
CASE_RENAMES = {"a.txt": "A.txt", "A.txt": "a.txt", "d": "D", "D": "d", "d/a.txt": "d/A.txt"}


class Crash(BaseException):
    """kill -9 at a call into the operating system (not an Exception: nothing may catch it)."""


class InjectingOs:
    """``os`` for the sync modules, counting calls and injecting a fault at the ``at``-th."""

    def __init__(self, at: int):
        self.calls, self.at = 0, at

    def inject(self, name: str) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if not callable(real) or isinstance(real, type):
            return real

        def counted(*args, **kwargs):
            self.calls += 1
            self.inject(name)
            return self.returned(name, args, real(*args, **kwargs))
        return counted

    def returned(self, name: str, args: tuple, result):
        return result


class CrashingOs(InjectingOs):
    """kill -9 at the ``at``-th call: Crash there and at every later call."""

    def __init__(self, at: int, on_crash):
        super().__init__(at)
        self.on_crash = on_crash
        self.opened: set[int] = set()

    def inject(self, name: str) -> None:
        if self.calls == self.at:
            self.on_crash()
        if self.calls >= self.at:  # the process is gone: no cleanup on the way out either
            raise Crash(f"{name} (call {self.at})")

    def returned(self, name: str, args: tuple, result):
        if name in ("open", "dup") and isinstance(result, int):
            self.opened.add(result)
        elif name == "close" and args:
            self.opened.discard(args[0])
        return result

    def release(self) -> None:
        """What the kernel does for a killed process: close the descriptors it left open."""
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)


class FailingOs(InjectingOs):
    """The ``at``-th call fails with ``code``, once: a disk error, a full disk, a lock."""

    def __init__(self, at: int, code: int):
        super().__init__(at)
        self.code = code
        #: The call that failed (None: the pass made fewer calls).
        self.failed: str | None = None

    def inject(self, name: str) -> None:
        if self.calls == self.at and name != "close":
            self.fail(name)

    def returned(self, name: str, args: tuple, result):
        if self.calls == self.at and name == "close":  # the descriptor is released all the same
            self.fail(name)
        return result

    def fail(self, name: str):
        self.failed = name
        raise OSError(self.code, os.strerror(self.code), f"injected into {name}")


class Progress:
    """Counts the machines started; on a long budget prints the pace every 1,000 (pytest -s)."""

    started: float | None = None
    runs = 0

    @classmethod
    def tick(cls) -> None:
        # What lives on now (hypothesis's record of the run) is frozen: each kill's full
        # collection then scans only the example's own objects, not a heap that grows with
        # every example (the run slowed from 0.15 to 0.5 s per example).
        if cls.runs % 100 == 0:
            gc.unfreeze()  # what was frozen and has died since (cycles) is freed now and then
        gc.collect()
        gc.freeze()
        if cls.started is None:
            cls.started = time.monotonic()
        cls.runs += 1
        if EXAMPLES >= 1000 and cls.runs % 1000 == 0:
            print(f"model: {cls.runs} runs in {time.monotonic() - cls.started:.0f} s, "
                  f"{_rss_mib():.0f} MiB", flush=True)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recorded(rule_function):
    """Note each step as it runs: a failure that does not replay (timing) still shows its steps."""
    @functools.wraps(rule_function)
    def run(self, **arguments):
        self.steps.append(f"{rule_function.__name__}({arguments})")
        return rule_function(self, **arguments)
    return run


class TwoSidedUsers(RuleBasedStateMachine):
    """Users on both sides of one bidirectional NAS and its agent, crashing at random."""

    @initialize()
    def start(self):
        Progress.tick()
        self.base = Path(tempfile.mkdtemp(prefix="filesim-model-"))
        self.roots = {"nfs": self.base / "export", "windows": self._windows_root()}
        for root in self.roots.values():
            root.mkdir(parents=True)
        (self.roots["windows"] / MARKER).write_text(marker_text())
        self.state = self.base / "state"
        self.state.mkdir()
        self.written: set[str] = set()     # every content a user wrote
        self.superseded: set[str] = set()  # contents a user replaced or deleted
        self.count = 0
        self.steps: list[str] = []
        #: The call each failing pass made fail (None: the pass made fewer calls).
        self.failed: list[str | None] = []
        self.agent = self._new_agent()

    def _new_agent(self) -> Agent:
        log = logging.getLogger("filesim-model")
        log.disabled = True
        agent = Agent(Settings(nfs=self.roots["nfs"], windows=self.roots["windows"],
                               state=self.state, mode="bidirectional", settle=0.0,
                               hash_sweep_minutes=0), log)
        agent.prepare()
        return agent

    def _windows_root(self) -> Path:
        return self.base / "data" / "nas-backup"

    def teardown(self):
        if getattr(self, "agent", None) is not None:
            self.agent.close()
            shutil.rmtree(self.base, ignore_errors=True)

    # -- what users do -------------------------------------------------------------------

    def _content(self) -> str:
        self.count += 1
        token = f"content {self.count}\n"
        self.written.add(token)
        return token

    def _supersede(self, path: Path) -> None:
        """What a user replaces or deletes at ``path`` (a file, or a folder's files)."""
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            self.superseded.add(file.read_text())

    @rule(rel=st.sampled_from(FILES))
    @recorded
    def write_on_nfs(self, rel):
        self._write("nfs", rel)

    @rule(rel=st.sampled_from(FILES))
    @recorded
    def write_on_windows(self, rel):
        self._write("windows", rel)

    def _write(self, side: str, rel: str) -> None:
        path = self.roots[side] / rel
        if any(p.is_file() for p in path.parents if self.roots[side] in p.parents) or path.is_dir():
            return  # a file where a folder must be, or the reverse: another rule's case
        if path.is_file():
            self._supersede(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._content())

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(FILES + FOLDERS), retype=st.booleans())
    @recorded
    def delete(self, side, rel, retype):
        """Delete a file or folder; with ``retype`` a folder takes a file's place, or the reverse."""
        path = self.roots[side] / rel
        if not path.exists():
            return
        self._supersede(path)
        if path.is_file():
            path.unlink()
            if retype:
                path.mkdir()
                (path / "inside.txt").write_text(self._content())
        else:
            shutil.rmtree(path)
            if retype:
                path.write_text(self._content())

    @rule(side=st.sampled_from(SIDES), old=st.sampled_from(FILES + FOLDERS),
          new=st.sampled_from(("c.txt", "n/c.txt", "n/d", "g", "e/f/b.txt")))
    @recorded
    def rename(self, side, old, new):
        source, target = self.roots[side] / old, self.roots[side] / new
        if not source.exists() or target.exists() or source in target.parents:
            return
        if any(p.is_file() for p in target.parents if self.roots[side] in p.parents):
            return
        target.parent.mkdir(parents=True, exist_ok=True)  # a move into a new folder
        source.rename(target)

    # -- what the agent does -------------------------------------------------------------

    @rule()
    @recorded
    def agent_pass(self):
        self.agent.flush_once(timeout=30)

    @rule(at=st.integers(min_value=1, max_value=150))
    @recorded
    def agent_pass_killed(self, at):
        crashing = CrashingOs(at, on_crash=self._killed)
        tree_module.os = versions_module.os = crashing
        try:
            self.agent.flush_once(timeout=30)
        except Crash:
            pass
        finally:
            self.agent.close()
            self.agent = None
            gc.collect()  # the killed pass's half-run generators end while calls still fail
            tree_module.os = versions_module.os = os
            crashing.release()
        self.agent = self._new_agent()

    @rule(at=st.integers(min_value=1, max_value=150),
          code=st.sampled_from((errno.EACCES, errno.EIO, errno.ENOSPC, errno.EBUSY, errno.ENOENT)))
    @recorded
    def agent_pass_failing(self, at, code):
        """One call fails: the agent makes it a problem or a retry, and never stops."""
        failing = tree_module.os = versions_module.os = FailingOs(at, code)
        try:
            self.agent.flush_once(timeout=30)
        finally:
            tree_module.os = versions_module.os = os
            self.failed.append(failing.failed)

    def _killed(self) -> None:
        """kill -9: what the state database had not committed is gone with the process."""
        self.agent.state.commit = lambda: None

    @invariant()
    def no_content_nobody_wrote(self):
        for side, root in self.roots.items():
            for file in _user_files(root):
                assert file.read_text() in self.written, f"{side}: {file} holds unknown content"

    # -- after quiet ---------------------------------------------------------------------

    @rule()
    @recorded
    def quiet(self):
        """A flush with nobody writing: both sides agree and nothing is lost."""
        for _ in range(3):
            problems = self.agent.problems
            problems.retry_now({problem.path for problem in problems})  # back-off ended
            self.agent.flush_once(timeout=30)
            self.agent.reconciler.release()  # the tester's `invoke release` of held deletions
        self.agent.flush_once(timeout=30)
        sides = {side: _snapshot(root) for side, root in self.roots.items()}
        try:
            self.check_same(sides["nfs"], sides["windows"])
        except AssertionError as failed:
            raise AssertionError(f"{failed}\nsteps: " + "; ".join(self.steps)) from None
        # What nobody replaced or deleted is on the sides (a conflict copy at worst), not
        # only among the versions: those keep what the agent replaced or deleted for a user.
        on_sides = {text for text in sides["nfs"].values() if text is not None}
        lost = self.written - self.superseded - on_sides
        assert not lost, f"only among the versions or gone: {sorted(lost)}"
        temps = [p for root in self.roots.values() for p in root.rglob(f"{TEMP_PREFIX}*")]
        assert not temps
        assert not [p for p in self.agent.problems if not p.notice], self.agent.problems.as_list()

    def check_same(self, nfs: dict[str, str | None], windows: dict[str, str | None]) -> None:
        assert nfs == windows


class NtfsShare:
    """One share behaving like NTFS behind 9p (tests/support/ninepfs.py) for all of NtfsUsers."""

    mounted: NinePShare | None = None
    examples = 0

    @classmethod
    def folder(cls) -> tuple[Path, Path]:
        """A new data root for one example: (as the agent and the users see it, its backing)."""
        if cls.mounted is None:
            cls.mounted = NinePShare(Path(tempfile.mkdtemp(prefix="filesim-model-ntfs-")), ntfs=True)
        cls.examples += 1
        name = f"example-{cls.examples}"
        (cls.mounted.backing_root / name).mkdir()
        return cls.mounted.mount_root / name, cls.mounted.backing_root / name

    @classmethod
    def stop(cls) -> None:
        if cls.mounted is not None:
            cls.mounted.stop()
            shutil.rmtree(cls.mounted.backing_root.parent, ignore_errors=True)
            cls.mounted = None


@pytest.fixture(scope="module", autouse=True)
def _ntfs_share_stopped():
    yield
    NtfsShare.stop()


def _windows_can_hold(path: str) -> bool:
    return all(windows_can_hold(part) for part in path.split("/"))


class NtfsUsers(TwoSidedUsers):
    """The same users with the Windows side on NTFS behind 9p: names that differ in case only
    are one name there, some names cannot exist there, and users rename in case only.

    NFS clients also create names Windows cannot hold and names that differ in case only;
    Windows users write through the share (so NTFS's rules apply to them too). After quiet,
    every NFS entry has its Windows copy under the name the agent agreed for it, and that
    name is the NFS one (up to case) wherever Windows can hold it.
    """

    def _windows_root(self) -> Path:
        self.share_folder, self.backing_folder = NtfsShare.folder()
        return self.share_folder / "nas-backup"

    def teardown(self):
        super().teardown()
        if hasattr(self, "backing_folder"):
            shutil.rmtree(self.backing_folder, ignore_errors=True)

    @rule(rel=st.sampled_from(NTFS_ONLY_ON_NFS))
    @recorded
    def write_odd_name_on_nfs(self, rel):
        self._write("nfs", rel)

    @rule(rel=st.sampled_from((*FILES, "A.txt", "D/b.txt")))
    @recorded
    def write_on_windows(self, rel):
        self._write("windows", rel)  # A.txt is a.txt there, D/b.txt is d/b.txt

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(sorted(CASE_RENAMES)))
    @recorded
    def rename_case(self, side, rel):
        """Rename to the same name in another case (on Windows, the same entry)."""
        root = self.roots[side]
        source, target = root / rel, root / CASE_RENAMES[rel]
        if side == "nfs" and (not source.exists() or target.exists()):
            return
        if side == "windows" and not any(p.name == source.name for p in source.parent.glob("*")):
            return  # the entry does not have this spelling there (another case, or nothing)
        source.rename(target)

    def check_same(self, nfs: dict[str, str | None], windows: dict[str, str | None]) -> None:
        state = self.agent.state
        names = {path: state.win_of(path) for path in nfs}
        assert None not in names.values(), f"not agreed: {[p for p, w in names.items() if w is None]}"
        # Windows compares names in any case: a child agreed as D/b.txt is d/b.txt there too.
        assert {names[path].lower(): content for path, content in nfs.items()} == \
            {win.lower(): content for win, content in windows.items()}
        folded = collections.Counter(path.lower() for path in nfs)
        for path, win in names.items():
            if not _windows_can_hold(path):
                continue
            if all(folded[p] == 1 for p in _ancestry(path)):
                # Its own name (in any case: the same name there); or, stably, the alternative
                # it got while another NFS name differed from it in case only (docs/design.md).
                assert all(w.lower() == p.lower() or alternative_of(w, "case") == p
                           or alternative_of(p, "name") == w  # two Windows names, one NFS name
                           for w, p in zip(win.split("/"), path.split("/"), strict=True)), \
                    f"{path} is {win} on Windows"


def _ancestry(path: str) -> list[str]:
    """``path`` and the folders above it, in lower case."""
    parts = path.lower().split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _user_files(root: Path) -> list[Path]:
    """Files of one side, without the agent's own (marker, journal folder, temp files)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".filesim")
            and ".filesim" not in p.relative_to(root).parts]


def _snapshot(root: Path) -> dict[str, str | None]:
    """Path → content (None for a folder) of one side's user entries."""
    found: dict[str, str | None] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".filesim"):
            continue
        found[rel.as_posix()] = path.read_text() if path.is_file() else None
    return found


SEED = os.environ.get("FILESIM_MODEL_SEED")
TwoSidedUsers.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    # Under mutmut a failure need only be found, not shrunk.
    phases=[p for p in Phase if p != Phase.shrink or "mutmut" not in sys.modules],
    suppress_health_check=[HealthCheck.too_slow], derandomize=not SEED)
NtfsUsers.TestCase.settings = settings(TwoSidedUsers.TestCase.settings, max_examples=NTFS_EXAMPLES)
for machine in (TwoSidedUsers, NtfsUsers) if SEED else ():
    seed(int(SEED))(machine)
TestTwoSidedUsers = TwoSidedUsers.TestCase
TestNtfsUsers = NtfsUsers.TestCase


# -- failures hypothesis found, kept as regular tests -------------------------------------------

def replay(*steps: tuple[str, dict], machine_class: type[TwoSidedUsers] = TwoSidedUsers) -> list:
    """Run one shrunk example step by step, checking the invariant after each.

    Returns the calls its failing passes made fail: a test names them, so that a change in
    the agent's order of calls makes it fail loudly instead of no longer reaching the bug.
    """
    machine = machine_class()
    machine.start()
    try:
        for rule_name, arguments in steps:
            getattr(machine, rule_name)(**arguments)
            machine.no_content_nobody_wrote()
        return machine.failed
    finally:
        machine.teardown()


def test_a_root_listing_refused_once_leaves_no_problem_behind():
    """A problem named the root forever, and flushes never came out clean."""
    failed = replay(("write_on_nfs", {"rel": "d/a.txt"}),
                    ("agent_pass_failing", {"at": 21, "code": errno.EACCES}),
                    ("quiet", {}))
    assert failed == ["dup"]  # the index reaches this call still


def test_a_folder_whose_close_fails_stops_no_pass():
    """close() of a folder's descriptor reporting EIO escaped the pass (the agent stopped)."""
    failed = replay(("write_on_nfs", {"rel": "e/f/a.txt"}),
                    ("agent_pass_failing", {"at": 77, "code": errno.EIO}),
                    ("quiet", {}))
    assert failed == ["close"]  # the index reaches this call still


def test_an_error_no_rule_expects_costs_a_pass_not_the_agent():
    """EBUSY from dup() during a poll escaped the pass (the agent stopped)."""
    failed = replay(*[("write_on_nfs", {"rel": rel}) for rel in
                      ("d/a.txt", "a.txt", "a.txt", "b.txt", "a.txt", "a.txt", "e/f/a.txt")],
                    ("write_on_windows", {"rel": "a.txt"}),
                    ("agent_pass_failing", {"at": 3, "code": errno.EACCES}),
                    ("delete", {"side": "nfs", "rel": "b.txt", "retype": False}),
                    ("delete", {"side": "windows", "rel": "d/a.txt", "retype": False}),
                    ("write_on_nfs", {"rel": "a.txt"}),
                    ("agent_pass_failing", {"at": 95, "code": errno.EBUSY}),
                    ("quiet", {}))
    assert failed == ["stat", "dup"]  # the index reaches this call still


def test_a_folder_renamed_in_case_only_on_nfs_keeps_its_files_on_nfs():
    """d → D on NFS: the folder's file came back as d/a.txt on NFS, D was left empty."""
    replay(("write_on_windows", {"rel": "d/a.txt"}), ("quiet", {}),
           ("rename_case", {"side": "nfs", "rel": "d"}), ("quiet", {}), machine_class=NtfsUsers)


def test_a_windows_edit_unseen_by_size_and_mtime_is_not_lost_to_an_nfs_rename():
    """The NFS rename was carried out over the edit, which was then taken as agreed."""
    replay(("write_on_windows", {"rel": "A.txt"}), ("agent_pass", {}),
           ("write_on_windows", {"rel": "a.txt"}),  # the same file there, same size, same second
           ("rename_case", {"side": "nfs", "rel": "A.txt"}), ("quiet", {}), machine_class=NtfsUsers)


def test_an_nfs_edit_is_not_lost_to_a_case_only_rename_on_windows():
    """The NFS file took the Windows name with its edit, which then counted as agreed."""
    replay(("write_on_nfs", {"rel": "a.txt"}), ("agent_pass", {}), ("write_on_nfs", {"rel": "a.txt"}),
           ("rename_case", {"side": "windows", "rel": "a.txt"}), ("quiet", {}), machine_class=NtfsUsers)


def test_a_windows_edit_is_not_lost_to_a_case_only_rename_on_windows():
    """The rename reached NFS and the edit, unseen by size and mtime, counted as agreed."""
    replay(("write_odd_name_on_nfs", {"rel": "A.txt"}), ("agent_pass", {}),
           ("write_on_windows", {"rel": "a.txt"}), ("rename_case", {"side": "windows", "rel": "A.txt"}),
           ("quiet", {}), machine_class=NtfsUsers)


def test_a_windows_edit_unseen_yet_moves_with_its_folder_renamed_on_nfs():
    """The racy check followed the old path: the edit, same size and second, was never copied."""
    replay(("write_odd_name_on_nfs", {"rel": "d/A.txt"}), ("agent_pass", {}),
           ("write_on_windows", {"rel": "d/a.txt"}), ("rename_case", {"side": "nfs", "rel": "d"}),
           ("quiet", {}), machine_class=NtfsUsers)


def test_a_failed_look_at_a_racy_file_is_tried_again():
    """A read refused once dropped the racy check: the same-size edit was never copied."""
    failed = replay(("agent_pass_killed", {"at": 1}), ("write_odd_name_on_nfs", {"rel": "A.txt"}),
                    ("quiet", {}), ("write_odd_name_on_nfs", {"rel": "d/A.txt"}), *[("quiet", {})] * 4,
                    ("write_on_windows", {"rel": "a.txt"}),
                    ("agent_pass_failing", {"at": 32, "code": errno.EACCES}),
                    ("quiet", {}), machine_class=NtfsUsers)
    assert failed == ["dup"]  # the index reaches this call still


def test_a_windows_edit_unseen_yet_moves_with_its_folder_renamed_on_windows():
    """The racy mark was dropped as the folder's files looked deleted: the edit never came."""
    replay(("write_odd_name_on_nfs", {"rel": "d/A.txt"}), ("agent_pass", {}),
           ("write_on_windows", {"rel": "d/a.txt"}),
           ("rename", {"side": "windows", "old": "d", "new": "c.txt"}), ("quiet", {}),
           machine_class=NtfsUsers)


@pytest.mark.parametrize("deleted_on", [("nfs",), ("nfs", "windows")])
def test_a_case_only_rename_that_met_an_edit_is_a_notice_saying_so(deleted_on):
    """It spoke of another name differing in case, though there was none."""
    machine = NtfsUsers()
    machine.start()
    try:
        for rule_name, arguments in (("write_on_nfs", {"rel": "a.txt"}), ("agent_pass", {}),
                                     ("write_on_nfs", {"rel": "a.txt"}),
                                     ("rename_case", {"side": "windows", "rel": "a.txt"}),
                                     ("quiet", {})):
            getattr(machine, rule_name)(**arguments)
        assert [(p.path, p.reason) for p in machine.agent.problems if p.notice] == [
            ("a.txt", "shown on Windows as 'A.txt', on NFS as 'a.txt': a rename in case only met "
                      "an edit and was not carried over (Windows takes both for one name)")]
        for side in deleted_on:  # deleted on NFS, the deletion propagated; or on both sides
            machine.delete(side=side, rel="a.txt" if side == "nfs" else "A.txt", retype=False)
        machine.quiet()
        assert [p for p in machine.agent.problems if p.notice] == []  # gone with the file
    finally:
        machine.teardown()
