"""filesim tasks: `invoke --list` shows them, `invoke --help TASK` explains one."""

from __future__ import annotations

import functools
import json as jsonlib
import os

from invoke import Exit, task

from filesim import toolkit
from filesim.engines import ENGINES
from filesim.errors import EXIT_INTERNAL, UserError
from filesim.terminal import show

VALUES_HELP = {
    "values": "values file (repeatable; later files win; default values/default.yaml)",
    "set": "override one value, e.g. nasServers[0].sync.interval=5 (repeatable)",
}
ENGINE_HELP = {
    **VALUES_HELP,
    "engine": f"auto | {' | '.join(ENGINES)} (default: $FILESIM_ENGINE, else auto)",
    "context": "kube context of the kubernetes/minikube engine (default: $FILESIM_KUBE_CONTEXT, "
               "else the current one; minikube: its profile)",
    "data_root": "the folder holding one folder per NAS (values windowsRoot; podman's default "
                 "./simulator-data; $FILESIM_DATA_ROOT)",
}
ENGINE_ARGS = {"iterable": ["values", "set"], "help": ENGINE_HELP}


def user_errors(fn):
    """One line per error and the documented exit code (README), JSON where --json was asked.

    Unexpected errors are bugs: one line too (FILESIM_DEBUG=1 shows the traceback).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("json"))
        try:
            return fn(*args, **kwargs)
        except Exit:
            raise
        except UserError as exc:
            raise _failure(str(exc), exc.exit_code, as_json) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exception as exc:
            if os.environ.get("FILESIM_DEBUG"):
                raise
            raise _failure(f"internal error: {type(exc).__name__}: {exc} (a bug: FILESIM_DEBUG=1 "
                           "shows where; please report it)", EXIT_INTERNAL, as_json) from None

    return wrapper


def _failure(message: str, code: int, as_json: bool) -> Exit:
    if as_json:
        print(jsonlib.dumps({"ok": False, "error": message}))
        return Exit(code=code)
    return Exit(message, code=code)


@task(iterable=["values", "set"], help={
    **VALUES_HELP, "target": "kubernetes | podman", "out": "output folder (default manifests/)"})
@user_errors
def synth(c, values=None, set=None, target="kubernetes", out="manifests"):
    """Write the manifests: one file per NAS plus the shared objects."""
    show(*toolkit.synth(values, set, target, out))


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "dry_run": "print the commands, run nothing"}})
@user_errors
def setup(c, engine=None, values=None, set=None, data_root=None, context=None, dry_run=False):
    """Prepare an engine (podman, minikube or kubernetes): NAS image, one folder per NAS."""
    eng = toolkit.engine(engine, values, set, data_root, context, dry_run=dry_run,
                         need_data_root=False)
    with toolkit.locked(eng, "setup"):
        eng.setup(toolkit.progress)


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "timeout": "seconds to wait for ready (120)"}})
@user_errors
def deploy(c, engine=None, values=None, set=None, data_root=None, context=None, timeout="120"):
    """Start (or replace) every NAS and wait until all serve NFS and sync."""
    seconds = toolkit.seconds(timeout, "--timeout")
    eng = toolkit.engine(engine, values, set, data_root, context)
    with toolkit.locked(eng, "deploy"):
        eng.apply(toolkit.progress)
        eng.wait_ready(seconds, toolkit.progress)
        toolkit.start_watcher(eng)
    show(*toolkit.status_report(eng.status(), as_json=False, watcher=toolkit.watcher_info(eng),
                                host=eng.host_lines()))


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "json": "print JSON"}})
@user_errors
def status(c, engine=None, values=None, set=None, data_root=None, context=None, json=False):
    """Show every NAS: ready, endpoint, mode, last pass, pending, conflicts, errors."""
    eng = toolkit.engine(engine, values, set, data_root, context)
    states = eng.status()
    show(*toolkit.status_report(states, as_json=json, watcher=toolkit.watcher_info(eng),
                                host=eng.host_lines()))
    if not all(s.ready for s in states):
        raise Exit(code=1)


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name",
                                 "container": "sync (default) | nfs | init",
                                 "follow": "keep printing new lines"}})
@user_errors
def logs(c, nas, container="sync", follow=False, engine=None, values=None, set=None,
         data_root=None, context=None):
    """Print a NAS container's log (the sync sidecar's by default)."""
    if container not in ("sync", "nfs", "init"):
        raise Exit(f"--container {container!r}: use sync, nfs or init", code=2)
    toolkit.engine(engine, values, set, data_root, context).logs(nas, container, follow)


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP,
                                 "background": "start it in the background (as deploy does) and return",
                                 "stop": "stop the background watcher"}})
@user_errors
def watch(c, background=False, stop=False, engine=None, values=None, set=None, data_root=None, context=None):
    """Send Windows-side changes to the sync agents as they happen, until Ctrl-C.

    `invoke deploy` starts the same watcher in the background; without one, each agent polls.
    """
    eng = toolkit.engine(engine, values, set, data_root, context)
    if stop:
        toolkit.stop_watcher(eng)
    elif background:
        print(toolkit.start_watcher(eng))
    else:
        toolkit.watch(eng)


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name"}})
@user_errors
def probe_windows(c, nas, engine=None, values=None, set=None, data_root=None, context=None):
    """Show a NAS's Windows, node and container paths and prove they are one folder."""
    from filesim.checks import probe_windows as probe

    result = probe(toolkit.engine(engine, values, set, data_root, context), nas)
    for key in ("windows", "node", "container"):
        print(f"{key:9}  {result[key]}")
    print("live: a probe file written on the Windows side was read in the sync container")


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name", "json": "print JSON",
                                 "timeout": "seconds to wait per direction (30)"}})
@user_errors
def check_sync(c, nas, json=False, timeout="30", engine=None, values=None, set=None,
               data_root=None, context=None):
    """Write a file on each side of a NAS and wait for it on the other."""
    from filesim.checks import check_sync as check

    seconds = toolkit.seconds(timeout, "--timeout")
    result = check(toolkit.engine(engine, values, set, data_root, context), nas, seconds)
    show(jsonlib.dumps(result) if json else toolkit.check_report(result))
    if not result["ok"]:
        raise Exit(code=1)


@task(positional=["nas"], iterable=["values", "set"], help={
    **ENGINE_HELP, "nas": "a NAS name, several comma-separated, or all", "json": "print JSON",
    "timeout": "seconds to wait (60)"})
@user_errors
def wait_synced(c, nas, timeout="60", json=False, engine=None, values=None, set=None,
                data_root=None, context=None):
    """Wait until everything changed on either side before now is on the other side too.

    Exit 0 once every named NAS is in step; 1 at the timeout, naming what is still pending.
    """
    names = toolkit.nas_list(nas)
    seconds = toolkit.seconds(timeout, "--timeout")
    result = toolkit.wait_synced(toolkit.engine(engine, values, set, data_root, context), names,
                                 seconds)
    show(jsonlib.dumps(result) if json else toolkit.wait_report(result))
    if not result["ok"]:
        raise Exit(code=1)


@task(positional=["nas", "kind"], iterable=["values", "set"], help={
    **ENGINE_HELP, "nas": "NAS name, several comma-separated, or all",
    "kind": "down | hang | readonly | full | slow[=MS] | flaky[=P] | clear",
    "for": "end it by itself after this many seconds", "json": "print JSON",
    "dry_run": "print what would be done"})
@user_errors
def fault(c, nas, kind, for_=None, json=False, dry_run=False, engine=None, values=None, set=None,
          data_root=None, context=None):
    """Make a NAS fail the way real NAS servers do (or heal it with clear); see README."""
    eng = toolkit.engine(engine, values, set, data_root, context, dry_run=dry_run)
    show(*toolkit.fault(eng, toolkit.nas_list(nas), kind, for_, json))


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "json": "print JSON"}})
@user_errors
def faults(c, json=False, engine=None, values=None, set=None, data_root=None, context=None):
    """List the faults on (each NAS's fault and when it ends by itself)."""
    show(*toolkit.faults_report(toolkit.engine(engine, values, set, data_root, context).status(),
                                json))


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "force": "remove exports even where changes could "
                                 "not reach the Windows folder (they are lost)"}})
@user_errors
def destroy(c, force=False, engine=None, values=None, set=None, data_root=None, context=None):
    """Stop and remove every NAS; an export goes only once all of it reached the Windows side."""
    eng = toolkit.engine(engine, values, set, data_root, context)
    with toolkit.locked(eng, "destroy"):
        try:
            eng.destroy(toolkit.progress, force=force)
        finally:  # an export kept is no reason to keep watching for pods that are gone
            toolkit.stop_watcher(eng)


SIDE_HELP = "windows (your folder, default) or nfs (the export)"


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name",
                                 "path": "only the versions of this file or folder",
                                 "side": SIDE_HELP, "json": "print JSON"}})
@user_errors
def versions(c, nas, path=None, side="windows", json=False, engine=None, values=None, set=None,
             data_root=None, context=None):
    """List what the sync agent kept of a NAS (either side) before deleting or replacing it."""
    show(*toolkit.versions_report(toolkit.engine(engine, values, set, data_root, context), nas,
                                  path, json, side))


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name",
                                 "path": "a file, or a folder (every file kept below it; . for all)",
                                 "at": "the latest versions kept at or before this UTC time "
                                       "(default: the latest)",
                                 "side": SIDE_HELP, "json": "print JSON",
                                 "timeout": "seconds to wait for the other side (60)"}})
@user_errors
def restore(c, nas, path, at=None, side="windows", json=False, timeout="60", engine=None, values=None,
            set=None, data_root=None, context=None):
    """Put kept versions back (in the folder or the export) and wait until both sides have them."""
    result = toolkit.restore(toolkit.engine(engine, values, set, data_root, context), nas, path, at,
                             toolkit.seconds(timeout, "--timeout"), side)
    print(jsonlib.dumps(result) if json else toolkit.restore_report(result))
    if not result["ok"]:
        raise Exit(code=1)


@task(**{**ENGINE_ARGS, "help": {**ENGINE_HELP, "nas": "NAS name"}})
@user_errors
def release(c, nas, engine=None, values=None, set=None, data_root=None, context=None):
    """Let the deletions a NAS's mass-deletion guard holds go through."""
    answer = toolkit.engine(engine, values, set, data_root, context).agent_request(nas, "release", 30)
    if not answer or not answer.get("ok"):
        raise Exit(f"{nas}: the sync agent did not answer; `invoke status` and `invoke logs {nas}`",
                   code=1)
    print(f"{nas}: {answer.get('released', 0)} held deletion(s) released")
