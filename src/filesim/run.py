"""The one place external commands are run: echo, dry-run and error reporting live here."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from filesim.errors import UserError


class CommandError(UserError):
    """A command failed; the message names it and ends with its last lines of output."""

    def __init__(self, argv: Sequence[str], code: int, output: str):
        self.argv, self.code, self.output = list(argv), code, output
        tail = " | ".join(output.strip().splitlines()[-3:])
        super().__init__(f"`{shlex.join(argv)}` exited {code}" + (f": {tail}" if tail else ""))


#: Seconds one command may take (one that only reads: READ_TIMEOUT): a hung tool becomes an
#: error naming it, never a hung task.
COMMAND_TIMEOUT = 300.0
READ_TIMEOUT = 60.0


class ToolMissing(UserError):
    """A program filesim needs is not installed."""


@dataclass
class Runner:
    """Runs commands with one set of switches.

    Attributes:
        dry_run: print each command instead of running it (commands that only read may run).
        echo: print each command before running it.
        env: extra environment variables for every command.
    """

    dry_run: bool = False
    echo: bool = False
    env: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, argv: Sequence[str], *, check: bool = True, capture: bool = True,
                 reads_only: bool = False, timeout: float | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (stdin closed); raise CommandError if it fails and ``check`` is set.

        A captured command is stopped after ``timeout`` seconds (default COMMAND_TIMEOUT, or
        READ_TIMEOUT if it ``reads_only``); one whose output streams to the user
        (``capture=False``: builds, ``logs --follow``) runs as long as they let it.
        """
        if timeout is None:
            timeout = READ_TIMEOUT if reads_only else COMMAND_TIMEOUT
        argv = [str(a) for a in argv]
        if self.dry_run and not reads_only:
            print(shlex.join(argv))
            return subprocess.CompletedProcess(argv, 0, "", "")
        if self.echo:
            print(f"$ {shlex.join(argv)}", file=sys.stderr)
        try:
            result = subprocess.run(
                argv, env={**os.environ, **self.env}, text=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None, timeout=timeout if capture else None,
            )
        except FileNotFoundError:
            raise ToolMissing(f"{argv[0]} is not installed; run scripts/install.sh "
                              f"(or install it with your package manager)") from None
        except subprocess.TimeoutExpired as exc:
            output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output
            raise CommandError(argv, -1, (output or "") + f"\n(stopped: no end after {timeout:.0f} s)"
                               ) from None
        if check and result.returncode != 0:
            raise CommandError(argv, result.returncode, result.stdout or "")
        return result
