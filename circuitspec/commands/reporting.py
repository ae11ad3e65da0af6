"""Where a command's words go: results on stdout, progress and logs on stderr; -q and -v; CI annotations.

Results (tables, verdicts, the summary line) go to stdout, so ``circuitspec verify specs/ > report.txt``
keeps them; spinners, progress bars and diagnostics go to stderr, so they never end up in that file.
When stdout carries a machine-readable report (``--json -``, ``--junit -``, ``--output-format github``)
the human report moves to stderr and stdout stays parseable.

Output that is not a terminal is as wide as ``COLUMNS`` says, else 140 columns (a CI log, where a table
folded to 80 columns is hard to read). ``-q`` keeps only the summary line (errors are always printed),
``-v`` adds a note per claim. This module imports no torch: ``--help`` must stay fast. The third
format, GitHub Actions annotations, is :func:`circuitspec.verify.report.github_annotation`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Iterator

from rich.console import Console
from rich.progress import Progress

QUIET, NORMAL, VERBOSE = 0, 1, 2
PIPED_WIDTH = 140  # columns of piped output when COLUMNS is not set


def add_verbosity_arguments(p: argparse.ArgumentParser) -> None:
    level = p.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_true", help="print only the summary line and errors")
    level.add_argument("-v", "--verbose", action="store_true", help="also print a note for every claim")


def add_output_format_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-format", choices=("text", "github"), default="text",
                   help="text: the report on stdout (default); github: GitHub Actions annotations (::error file=...,"
                        "line=...::) on stdout, one per claim that fails or is inconclusive (or is falsified), the "
                        "report on stderr")


def verbosity(args: argparse.Namespace) -> int:
    return QUIET if getattr(args, "quiet", False) else VERBOSE if getattr(args, "verbose", False) else NORMAL


def make_console(stderr: bool) -> Console:
    """A console on stdout or stderr; when it is not a terminal, COLUMNS wide (140 if unset)."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console  # rich reads COLUMNS itself
    return Console(stderr=stderr, highlight=False, width=PIPED_WIDTH)


def writes_to_stdout(*paths) -> bool:
    """Whether one of these output options is '-' (the report goes to stdout)."""
    return any(p is not None and str(p) == "-" for p in paths)


class Reporter:
    """A command's two streams: ``out`` for results (stderr when stdout holds a machine-readable report),
    ``err`` for progress and logs; what is printed follows -q / -v."""

    def __init__(self, args: argparse.Namespace, stdout_taken: bool = False):
        self.level = verbosity(args)
        self.out = make_console(stderr=stdout_taken)
        self.err = make_console(stderr=True)

    @property
    def quiet(self) -> bool:
        return self.level == QUIET

    @property
    def verbose(self) -> bool:
        return self.level == VERBOSE

    def result(self, *objects, **kwargs) -> None:
        """Part of the report (a table, a verdict line); left out under -q."""
        if not self.quiet:
            self.out.print(*objects, **kwargs)

    def summary(self, *objects, **kwargs) -> None:
        """The summary line: printed at every verbosity."""
        self.out.print(*objects, **kwargs)

    def detail(self, *objects, **kwargs) -> None:
        """A note only -v asks for."""
        if self.verbose:
            self.out.print(*objects, **kwargs)

    def progress(self, *columns, **kwargs) -> "Progress | LineProgress":
        """A transient progress display on stderr (none under -q); when stderr is not a terminal (a CI log,
        ``2> file``), where a live bar shows nothing, a line per finished unit instead (:class:`LineProgress`)."""
        if not self.quiet and not self.err.is_terminal:
            return LineProgress(self.err)
        return Progress(*columns, console=self.err, transient=True, disable=self.quiet, **kwargs)

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[object]:
        """A spinner on stderr (none under -q); yields an object with ``update(text)`` either way. When stderr
        is not a terminal, the text as a line, and a line with the time taken when the work is done."""
        if self.quiet:
            yield _Silent()
            return
        if not self.err.is_terminal:
            started = time.perf_counter()
            self.err.print(f"{text} ...", markup=False, highlight=False, soft_wrap=True)
            yield _Silent()
            self.err.print(f"{text}: done in {time.perf_counter() - started:.1f} s", markup=False, highlight=False,
                           soft_wrap=True)
            return
        with self.err.status(text) as status:
            yield status


class LineProgress:
    """The part of rich's Progress the commands use, printing plain lines for a log: one per finished unit
    (``advance``) and one per change of description; updates that only move a counter print at each tenth
    of the total, so an optimisation of hundreds of steps writes about ten lines, not hundreds."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._tasks: dict[int, dict] = {}

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        handle = len(self._tasks)
        self._tasks[handle] = {"description": description, "total": total, "completed": 0, "tenth": 0}
        return handle

    def update(self, handle: int, *, description: str | None = None, completed: float | None = None,
               total: float | None = None, advance: float | None = None, **fields) -> None:
        task = self._tasks[handle]
        described = description is not None and description != task["description"]
        if description is not None:
            task["description"] = description
        if total is not None:
            task["total"] = total
        before = task["completed"]
        if completed is not None:
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        if described:
            task["tenth"] = 0
        moved = task["completed"] != before
        if moved and advance:
            self._line(task)
        elif moved and task["total"]:
            tenth = int(10 * task["completed"] / task["total"])
            if tenth > task["tenth"] or task["completed"] >= task["total"]:
                task["tenth"] = tenth
                self._line(task)

    def advance(self, handle: int, advance: float = 1) -> None:
        self.update(handle, advance=advance)

    def _line(self, task: dict) -> None:
        done = f"{task['completed']:g}/{task['total']:g}" if task["total"] else f"{task['completed']:g}"
        self.console.print(f"{task['description']}: {done}", markup=False, highlight=False, soft_wrap=True)


class _Silent:
    def update(self, *args, **kwargs) -> None:
        pass
