"""Command-line defaults from ``[tool.circuitspec]`` in pyproject.toml, so a project states its seed once.

::

    [tool.circuitspec]
    seed = 0          # verify, falsify, discover, scan, show
    samples = 200     # verify and falsify: inputs per claim group
    device = "cpu"    # auto, cpu or cuda: every command with --device
    threads = 1       # every command
    jobs = "auto"     # verify: processes side by side (a number, or "auto")

The table is read from the nearest pyproject.toml above the working directory, else above the first
spec PATH the command names. A flag on the command line wins over the table, and the table over the
built-in default. An unknown key or a value of the wrong type or range is a one-line usage error that
names the file (exit 2), checked before any work: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.errors import UsageError
from ..engine.tasks.project import find_pyproject, read_project_table
from .argtypes import MAX_SAMPLES, MAX_SEED

MAX_THREADS = 1024
MAX_JOBS = 256  # verify --jobs
DEVICES = ("auto", "cpu", "cuda")


def _whole(low: int, high: int, otherwise: str = ""):
    """Check a whole number from ``low`` to ``high``; ``otherwise``: the other value allowed, for the message."""
    alternative = f" or {otherwise}" if otherwise else ""

    def check(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number{alternative}, got {value!r}"
        if not low <= value <= high:
            return f"must be from {low:,} to {high:,}{alternative}, got {value}"
        return None
    return check


def _device(value) -> str | None:
    return None if value in DEVICES else f"must be one of {', '.join(map(repr, DEVICES))}, got {value!r}"


def _jobs(value) -> str | None:
    return None if value == "auto" else _whole(1, MAX_JOBS, "'auto'")(value)


#: key -> check (None when the value is good, else why not); the argparse destination has the key's name.
CHECKS = {"seed": _whole(0, MAX_SEED), "samples": _whole(1, MAX_SAMPLES), "device": _device, "threads": _whole(1, MAX_THREADS),
          "jobs": _jobs}


def settings_file(args: argparse.Namespace, cwd: Path) -> Path | None:
    """The pyproject.toml whose table applies: the nearest above ``cwd``, else above the first PATH."""
    found = find_pyproject(cwd)
    if found is None:
        paths = getattr(args, "paths", None) or ([args.path] if isinstance(getattr(args, "path", None), str) else [])
        found = find_pyproject(Path(paths[0]).absolute()) if paths else None
    return found


def project_defaults(pyproject: Path) -> dict:
    """The command-line defaults ``pyproject`` sets, each checked (UsageError naming the file otherwise)."""
    table = read_project_table(pyproject)
    defaults = {}
    for key, check in CHECKS.items():
        if key in table:
            problem = check(table[key])
            if problem:
                raise UsageError(f"{pyproject}: [tool.circuitspec] {key} {problem}")
            defaults[key] = table[key]
    return defaults


def apply_project_defaults(args: argparse.Namespace, cwd: Path) -> Path | None:
    """Fill the options the command line left unset (None) from the project's table; returns its file.
    An option the command does not have, or one with a built-in default of its own meaning (prove's
    --samples counts feature-combination inputs), is left alone."""
    pyproject = settings_file(args, cwd)
    if pyproject is None:
        return None
    for key, value in project_defaults(pyproject).items():
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, value)
    return pyproject
