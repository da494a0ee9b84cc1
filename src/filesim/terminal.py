"""What the tasks print: rich tables, colour and progress on a terminal, plain text when piped.

Results go to stdout, progress to stderr (so ``--json`` and pipes stay clean). Plain output
is what tests and scripts read: columns separated by two spaces, one progress line per step.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

#: Words coloured wherever they appear as a whole cell.
STYLES = {"yes": "green", "no": "bold red", "degraded": "yellow", "journal": "green",
          "polling": "yellow", "passed": "green", "failed": "bold red", "skipped": "dim",
          "in step": "green"}
COUNTER = re.compile(r"^(\d+)/(\d+) (\w+)(.*)$")
#: Piped output gets a counter line at most this often (a seed of 250,000 files: one per 10 s).
PIPED_EVERY = 10.0


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal a person reads."""
    return hasattr(stream, "isatty") and stream.isatty()


def table(rows: Sequence[Sequence[object]]) -> str | Table:
    """The first row as headers; a rich Table on a terminal, else left-aligned plain columns."""
    if is_terminal(sys.stdout):
        shown = Table(*map(str, rows[0]), box=None, header_style="bold", pad_edge=False)
        for row in rows[1:]:
            shown.add_row(*(f"[{STYLES[str(c)]}]{c}[/]" if str(c) in STYLES else str(c) for c in row))
        return shown
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def show(*parts: str | Table) -> None:
    """Print results to stdout (rich renderables on a terminal)."""
    console = Console(highlight=False, soft_wrap=True)
    for part in parts:
        if not is_terminal(sys.stdout):
            print(part)
        elif isinstance(part, str):
            console.print(part, markup=False)  # paths may hold [brackets]
        else:
            console.print(part)


class Reporter:
    """Progress on stderr: "3/7 ready; ..." lines become a bar on a terminal, others plain lines."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.task: Any = None
        #: Piped: when a counter line ("N/M what") was last printed, by what it counts.
        self._printed: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        """Report one step (piped, a counter at most every PIPED_EVERY seconds, and its end)."""
        counter = COUNTER.match(message)
        if not is_terminal(sys.stderr):
            if counter is not None:
                now, what = time.monotonic(), counter[3]
                finished = int(counter[1]) >= int(counter[2])
                if not finished and now - self._printed.get(what, -PIPED_EVERY) < PIPED_EVERY:
                    return
                self._printed[what] = now
            print(message, file=sys.stderr, flush=True)
            return
        if counter is None:
            self._finish()
            Console(stderr=True, highlight=False).print(f"[dim]·[/] {message}")
            return
        done, total, what, rest = int(counter[1]), int(counter[2]), counter[3], counter[4]
        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"),
                                TextColumn("[dim]{task.fields[detail]}"),
                                console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(what, total=total, detail="")
        self.bar.update(self.task, completed=done, total=total, detail=rest.lstrip("; "))
        if done >= total:
            self._finish()

    def _finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
