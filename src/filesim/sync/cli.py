"""Command line of the sync agent (``filesim-sync``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from filesim.sync import status as protocol
from filesim.sync.agent import EXIT_SHARE_LOST, Agent, ShareLost
from filesim.sync.items import NAME_POLICIES
from filesim.sync.plan import MODES
from filesim.sync.settings import Settings
from filesim.sync.tree import is_filesystem_root
from filesim.sync.versions import Versions, nfs_versions

EXIT_OK, EXIT_UNSETTLED, EXIT_USAGE, EXIT_NOT_MOUNTED = 0, 1, 2, 3
STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)
            if f.default is not dataclasses.MISSING}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        fields = {k: v for k, v in vars(record).items() if k not in STANDARD_RECORD_KEYS}
        return json.dumps({"time": round(record.created, 3), "level": record.levelname.lower(),
                           "event": record.getMessage(), **fields}, default=str)


class TextFormatter(logging.Formatter):
    """``time level event key=value ...`` for people reading logs."""

    def format(self, record: logging.LogRecord) -> str:
        """One text line."""
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items()
                          if k not in STANDARD_RECORD_KEYS)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {fields}".rstrip()


def parser() -> argparse.ArgumentParser:
    """The argument parser (defaults from Settings)."""
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="filesim-sync", description=__doc__)
    p.add_argument("--nfs", type=Path, help="the NFS export folder (local, inotify works)")
    p.add_argument("--windows", type=Path, help="the NAS's Windows folder (polled)")
    p.add_argument("--state", type=Path, required=True, help="folder for state and status.json")
    p.add_argument("--mode", choices=MODES, help="direction of the sync")
    p.add_argument("--interval", type=_positive, default=d["interval"],
                   help=f"seconds between polls of the Windows side (default {d['interval']:g})")
    p.add_argument("--settle", type=_non_negative, default=d["settle"],
                   help=f"seconds a file must stay unchanged before it is copied (default {d['settle']:g})")
    p.add_argument("--max-delay", type=_positive, default=d["max_delay"],
                   help="a file changing longer than this is published anyway, as a consistent "
                        f"version (default {d['max_delay']:g})")
    p.add_argument("--max-delete-fraction", type=_fraction, default=d["max_delete_fraction"],
                   help="hold a burst of deletions of more than this share of the files")
    p.add_argument("--max-delete-rate", type=_count, default=d["max_delete_rate"],
                   help="hold deletions past this many files within 10 seconds")
    p.add_argument("--windows-names", choices=NAME_POLICIES, default=d["windows_names"],
                   help="names Windows cannot hold: encode them (default) or report them")
    p.add_argument("--windows-root", default=None,
                   help="the share's root as Windows names it, for the 260-character limit "
                        "(default C:\\simulator-data\\<folder name>)")
    p.add_argument("--versions-days", type=_non_negative, default=d["versions_days"],
                   help="days kept versions stay")
    p.add_argument("--versions-max-bytes", type=int, default=d["versions_max_bytes"],
                   help="bytes all kept versions may take")
    p.add_argument("--hash-sweep-minutes", type=_non_negative, default=d["hash_sweep_minutes"],
                   help="a background pass hashing the Windows side takes at least this long (0: off)")
    p.add_argument("--hash-sweep-mb-per-second", type=_positive,
                   default=d["hash_sweep_mb_per_second"], help="cap of the background hashing")
    p.add_argument("--log-level", choices=("info", "debug"), default=d["log_level"])
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--once", action="store_true", help="reconcile once, then exit (seed)")
    p.add_argument("--flush", action="store_true",
                   help="copy everything pending now (settle ignored), then exit: 0 if nothing is "
                        "left on one side only")
    p.add_argument("--unsynced", action="store_true",
                   help="print as JSON the paths that differ from the agreed state on either side "
                        "and do nothing else (what a stopped agent left unsynced)")
    p.add_argument("--health", action="store_true",
                   help="only check the running agent's status.json; exit 0 if healthy")
    p.add_argument("--request", choices=protocol.REQUEST_KINDS,
                   help="ask the running agent (flush, barrier, release, restore), print its JSON "
                        "answer, exit 0 if ok")
    p.add_argument("--timeout", type=_positive, default=60.0, help="seconds to wait for --request")
    p.add_argument("--versions", action="store_true",
                   help="print as JSON what the agent kept of the NFS side (with --path: of it)")
    p.add_argument("--path", help="--versions, --request restore: a path of the export (a file, "
                                  "or a folder: every file kept below it; '.' for all)")
    p.add_argument("--at", type=float, help="--request restore: the versions kept at or before "
                                            "this time (seconds since the epoch; default: the latest)")
    p.add_argument("--require-own-filesystem", action="store_true",
                   help="refuse to run unless --nfs is the root of a filesystem of its own "
                        "(what the NAS pods pass: an export on a shared filesystem would let NFS "
                        "clients reach the rest of it)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the agent; return the exit code."""
    args = parser().parse_args(argv)
    if args.health:
        ok, why = protocol.health(protocol.read_status(args.state))
        print(why)
        return EXIT_OK if ok else EXIT_UNSETTLED
    if args.versions:
        kept = Versions(nfs_versions(args.state)).within(args.path or "", folded=False)
        print(json.dumps({"versions": [vars(v) for v in kept]}))
        return EXIT_OK
    if args.request:
        extra = {"path": args.path, "at": args.at} if args.request == "restore" else {}
        if args.request == "restore" and not args.path:
            parser().error("--request restore needs --path")
        answer = protocol.ask(args.state, args.request, args.timeout, **extra)
        print(json.dumps(answer))
        return EXIT_OK if answer.get("ok") else EXIT_UNSETTLED
    missing = [f"--{k}" for k in ("nfs", "windows", "mode") if getattr(args, k) is None]
    if missing:
        parser().error(f"{', '.join(missing)} required")
    log = _logger(args.log_format, args.log_level)
    for name, path in (("--nfs", args.nfs), ("--windows", args.windows)):
        if not path.is_dir():
            print(f"filesim-sync: {name} {path} is not a folder; check the volume mount",
                  file=sys.stderr)
            return EXIT_USAGE
    if args.require_own_filesystem and not is_filesystem_root(args.nfs):
        print(f"filesim-sync: {args.nfs} is a folder of a shared filesystem, not a filesystem of "
              f"its own, so NFS clients could reach beyond it; the engine prepares one per NAS "
              f"(scripts/export-fs.sh): redeploy with `invoke deploy`", file=sys.stderr)
        return EXIT_NOT_MOUNTED
    if protocol.share_id(args.windows) is None:
        print(f"filesim-sync: {args.windows / protocol.MARKER} is missing: the Windows share is not "
              f"mounted there; mount it (invoke setup creates the marker) and restart", file=sys.stderr)
        return EXIT_NOT_MOUNTED
    settings = Settings(
        args.nfs, args.windows, args.state, args.mode, args.interval, args.settle, args.max_delay,
        args.max_delete_fraction, args.max_delete_rate, args.windows_names,
        args.windows_root or f"C:\\simulator-data\\{args.windows.name}", args.versions_days,
        args.versions_max_bytes, args.hash_sweep_minutes, args.hash_sweep_mb_per_second,
        args.log_level)
    agent = Agent(settings, log)
    if args.unsynced:
        print(json.dumps({"unsynced": agent.unsynced()}))
        agent.state.close()
        return EXIT_OK
    agent.prepare()
    log.info("start", extra={"mode": args.mode, "interval": args.interval, "settle": args.settle,
                             "once": args.once, "flush": args.flush, "tracked": len(agent.state),
                             "case_insensitive": agent.windows.case_insensitive})
    try:
        if args.once or args.flush:
            done = agent.flush_once() if args.flush else agent.run_once()
            agent.state.close()
            return EXIT_OK if done else EXIT_UNSETTLED
        agent.run()
    except ShareLost as exc:
        log.error("share lost", extra={"error": str(exc), "detail": "exiting so the container "
                                       "restarts with a fresh mount"})
        return EXIT_SHARE_LOST
    return EXIT_OK


def _logger(fmt: str, level: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    log = logging.getLogger("filesim.sync")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if level == "debug" else logging.INFO)
    log.propagate = False
    return log


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("must be in (0, 1]")
    return value
