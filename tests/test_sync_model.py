"""Random users on both sides, the agent stepping between them and crashing anywhere (#23).

hypothesis drives a RuleBasedStateMachine: users create, edit, delete and rename files on
either side, move them into new folders and replace files by folders and back, while the
agent (in this process, on real folders) runs passes; a pass may crash at its Nth call into
the operating system from the trees or the versions, emulating kill -9: nothing more reaches
the state database, and a new agent starts on the same folders and state. After a quiet
flush: both sides are equal, every content a user wrote and no user replaced or deleted is on
the sides (a conflict copy at worst, not only among the versions), nothing holds content nobody
wrote, and no temp file is left.

The budget is FILESIM_MODEL_EXAMPLES (default 100, 15-25 s here, derandomized so CI sees the
same cases); with FILESIM_MODEL_SEED set the search is random from that seed
(`FILESIM_MODEL_EXAMPLES=20000 FILESIM_MODEL_SEED=1 pytest -s --timeout=0 ...`: the pace is
printed every 1,000 runs). A failure prints the shortest sequence of steps that shows it:
paste it into a regular test.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from filesim.sync import tree as tree_module
from filesim.sync import versions as versions_module
from filesim.sync.agent import Agent
from filesim.sync.settings import Settings
from filesim.sync.status import MARKER, marker_text
from filesim.sync.tree import TEMP_PREFIX

SIDES = ("nfs", "windows")
FILES = ("a.txt", "b.txt", "d/a.txt", "d/b.txt", "e/f/a.txt")
FOLDERS = ("d", "e", "e/f", "n")
# A crash leaves generators of the trees half-run; closing them later raises Crash again.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
EXAMPLES = int(os.environ.get("FILESIM_MODEL_EXAMPLES", "100"))


class Crash(BaseException):
    """kill -9 at a call into the operating system (not an Exception: nothing may catch it)."""


class CrashingOs:
    """``os`` for the sync modules, raising Crash at the ``at``-th call of a function."""

    def __init__(self, at: int, on_crash):
        self.calls, self.at, self.on_crash = 0, at, on_crash
        self.opened: set[int] = set()

    def release(self) -> None:
        """What the kernel does for a killed process: close the descriptors it left open."""
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if not callable(real) or isinstance(real, type):
            return real

        def counted(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                self.on_crash()
            if self.calls >= self.at:  # the process is gone: no cleanup on the way out either
                raise Crash(f"{name} (call {self.at})")
            result = real(*args, **kwargs)
            if name in ("open", "dup") and isinstance(result, int):
                self.opened.add(result)
            elif name == "close" and args:
                self.opened.discard(args[0])
            return result
        return counted


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


class TwoSidedUsers(RuleBasedStateMachine):
    """Users on both sides of one bidirectional NAS and its agent, crashing at random."""

    @initialize()
    def start(self):
        Progress.tick()
        self.base = Path(tempfile.mkdtemp(prefix="filesim-model-"))
        self.roots = {"nfs": self.base / "export", "windows": self.base / "data" / "nas-backup"}
        for root in self.roots.values():
            root.mkdir(parents=True)
        (self.roots["windows"] / MARKER).write_text(marker_text())
        self.state = self.base / "state"
        self.state.mkdir()
        self.written: set[str] = set()     # every content a user wrote
        self.superseded: set[str] = set()  # contents a user replaced or deleted
        self.count = 0
        self.agent = self._new_agent()

    def _new_agent(self) -> Agent:
        log = logging.getLogger("filesim-model")
        log.disabled = True
        agent = Agent(Settings(nfs=self.roots["nfs"], windows=self.roots["windows"],
                               state=self.state, mode="bidirectional", settle=0.0,
                               hash_sweep_minutes=0), log)
        agent.prepare()
        return agent

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
    def write_on_nfs(self, rel):
        self._write("nfs", rel)

    @rule(rel=st.sampled_from(FILES))
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
    def agent_pass(self):
        self.agent.flush_once(timeout=30)

    @rule(at=st.integers(min_value=1, max_value=150))
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
    def quiet(self):
        """A flush with nobody writing: both sides agree and nothing is lost."""
        for _ in range(3):
            self.agent.flush_once(timeout=30)
            self.agent.reconciler.release()  # the tester's `invoke release` of held deletions
        self.agent.flush_once(timeout=30)
        sides = {side: _snapshot(root) for side, root in self.roots.items()}
        assert sides["nfs"] == sides["windows"]
        # What nobody replaced or deleted is on the sides (a conflict copy at worst), not
        # only among the versions: those keep what the agent replaced or deleted for a user.
        on_sides = {text for text in sides["nfs"].values() if text is not None}
        lost = self.written - self.superseded - on_sides
        assert not lost, f"only among the versions or gone: {sorted(lost)}"
        temps = [p for root in self.roots.values() for p in root.rglob(f"{TEMP_PREFIX}*")]
        assert not temps


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


TwoSidedUsers.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=not os.environ.get("FILESIM_MODEL_SEED"))
if os.environ.get("FILESIM_MODEL_SEED"):
    seed(int(os.environ["FILESIM_MODEL_SEED"]))(TwoSidedUsers)
TestTwoSidedUsers = TwoSidedUsers.TestCase
