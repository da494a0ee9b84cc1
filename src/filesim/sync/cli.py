"""Command line of the sync agent."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from filesim.sync.agent import Agent, Settings, health, read_status
from filesim.sync.reconcile import MODES
from filesim.sync.tree import MARKER, is_filesystem_root

EXIT_OK, EXIT_UNSETTLED, EXIT_USAGE, EXIT_NOT_MOUNTED = 0, 1, 2, 3
STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


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
    """The argument parser."""
    p = argparse.ArgumentParser(prog="filesim-sync", description=__doc__)
    p.add_argument("--nfs", type=Path, help="the NFS export folder (local, inotify works)")
    p.add_argument("--windows", type=Path, help="the Windows share folder (polled)")
    p.add_argument("--state", type=Path, required=True, help="folder for state and status.json")
    p.add_argument("--mode", choices=MODES, help="direction of the sync")
    p.add_argument("--interval", type=_positive, default=2.0,
                   help="seconds between polls of the Windows side (default 2)")
    p.add_argument("--settle", type=_non_negative, default=0.5,
                   help="seconds a file must stay unchanged before it is copied (default 0.5)")
    p.add_argument("--once", action="store_true", help="reconcile once, then exit (seed)")
    p.add_argument("--max-delete-fraction", type=_fraction, default=0.5,
                   help="hold all deletions of a pass deleting more than this share of files")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--health", action="store_true",
                   help="only check the running agent's status.json; exit 0 if healthy")
    p.add_argument("--require-own-filesystem", action="store_true",
                   help="refuse to run unless --nfs is the root of a filesystem of its own "
                        "(what the NAS pods pass: an export on a shared filesystem would let NFS "
                        "clients reach the rest of it)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the agent; return the exit code."""
    args = parser().parse_args(argv)
    if args.health:
        ok, why = health(read_status(args.state))
        print(why)
        return EXIT_OK if ok else EXIT_UNSETTLED
    missing = [f"--{k}" for k in ("nfs", "windows", "mode") if getattr(args, k) is None]
    if missing:
        parser().error(f"{', '.join(missing)} required")
    log = _logger(args.log_format)
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
    if not (args.windows / MARKER).is_file():
        print(f"filesim-sync: {args.windows / MARKER} is missing: the Windows share is not mounted "
              f"there; mount it (invoke setup creates the marker) and restart", file=sys.stderr)
        return EXIT_NOT_MOUNTED
    agent = Agent(Settings(args.nfs, args.windows, args.state, args.mode, args.interval,
                           args.settle, args.max_delete_fraction), log)
    agent.prepare()
    log.info("start", extra={"mode": args.mode, "interval": args.interval, "settle": args.settle,
                             "once": args.once, "tracked": len(agent.state)})
    if args.once:
        settled = agent.run_once()
        agent.state.close()
        return EXIT_OK if settled else EXIT_UNSETTLED
    agent.run()
    return EXIT_OK


def _logger(fmt: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    log = logging.getLogger("filesim.sync")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
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
