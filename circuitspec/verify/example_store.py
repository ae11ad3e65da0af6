"""The counterexample database of ``falsify``: readable JSON, validated on every read, never silently lost.

A counterexample store exists so that CI keeps failing on a known failure until the spec or the model
changes, so losing one is a silent pass. Hence: a file is replaced atomically (a kill leaves the old
list or the new one); a file that cannot be read (empty, truncated, not UTF-8, not JSON, not a list of
records, a record with a missing, extra or mistyped field) stops the run with an error naming the file
and what is wrong, and is never overwritten; adding a record re-reads, merges and writes under an
exclusive lock on a sidecar ``NAME.json.lock``, so two runs sharing a database both keep what they found.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterator

from ..engine.atomic import write_text
from ..engine.errors import UsageError
from ..engine.tasks import TaskExample

DEFAULT_ROOT = Path(".circuitspec") / "examples"  # relative to the current folder
FIELDS = tuple(f.name for f in fields(TaskExample))
TEXT_FIELDS = ("prefix", "correct", "wrong", "suffix")
MAX_FILE_BYTES = 64 << 20  # far beyond any honest list of shrunk snippets


class ExampleStoreError(UsageError):
    """A database file that cannot be trusted: exit 2, the file left as it is."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}", hint="the counterexample database is left untouched: fix the file, or move "
                                                    "it aside (its counterexamples are then no longer replayed)")


def _kind(value) -> str:
    names = {bool: "a boolean", int: "a whole number", float: "a fractional number", str: "a string", list: "a list",
             dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_record(item, number: int) -> str | None:
    """What is wrong with record ``number`` (1-based), or None."""
    if not isinstance(item, dict):
        return f"record {number} is {_kind(item)}, not an object"
    missing, extra = [f for f in FIELDS if f not in item], sorted(set(item) - set(FIELDS))
    if missing or extra:
        problems = [f"missing field(s) {', '.join(missing)}"] if missing else []
        problems += [f"unexpected field(s) {', '.join(extra)}"] if extra else []
        return f"record {number} has " + "; ".join(problems)
    for name in TEXT_FIELDS:
        if not isinstance(item[name], str):
            return f"record {number}: {name} is {_kind(item[name])}, not a string"
    for name, allowed, what in (("features", (int, str, bool), "a whole number, string or boolean"),
                                ("positions", (int,), "a whole number")):
        table = item[name]
        if not isinstance(table, dict):
            return f"record {number}: {name} is {_kind(table)}, not an object"
        for key, value in table.items():
            if not isinstance(value, allowed) or (name == "positions" and isinstance(value, bool)):
                return f"record {number}: {name}[{key!r}] is {_kind(value)}, not {what}"
    return None


def read_examples(path: Path) -> list[TaskExample]:
    """The validated records of one database file ([] when there is none); ExampleStoreError otherwise."""
    if not os.path.lexists(path):
        return []
    if not path.is_file():
        raise ExampleStoreError(path, "is not a regular file")
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
    except OSError as e:
        raise ExampleStoreError(path, f"cannot be read ({e.strerror or e})") from None
    if data is None:
        raise ExampleStoreError(path, f"is larger than {MAX_FILE_BYTES >> 20} MiB: not a counterexample list")
    if not data.strip():
        raise ExampleStoreError(path, "is empty (a run was probably killed while writing it)")
    try:
        items = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ExampleStoreError(path, f"is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ExampleStoreError(path, f"is not valid JSON, truncated or damaged ({e.msg} at line {e.lineno} "
                                      f"column {e.colno})") from None
    except RecursionError:
        raise ExampleStoreError(path, "is nested too deeply to be a counterexample list") from None
    if not isinstance(items, list):
        raise ExampleStoreError(path, f"holds {_kind(items)}, not a list of counterexamples")
    for number, item in enumerate(items, 1):
        problem = _check_record(item, number)
        if problem:
            raise ExampleStoreError(path, problem)
    return [TaskExample(**item) for item in items]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s sidecar ``.lock`` file (created once, never removed: removing
    it would let two runs lock different files)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class ExampleStore:
    """Counterexamples as JSON files: ``<root>/<spec file stem>/<claim>.json`` holding a list of inputs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, spec_file: str, claim: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in claim)
        return self.root / Path(spec_file).stem / f"{safe}.json"

    def check(self, spec_files: list[str]) -> None:
        """Validate every stored file of these specs now, before any search: an unreadable one stops the run."""
        for spec_file in spec_files:
            folder = self.root / Path(spec_file).stem
            if os.path.lexists(folder) and not folder.is_dir():
                raise ExampleStoreError(folder, "is a file; the database keeps a folder per spec here")
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    read_examples(path)

    def load(self, spec_file: str, claim: str) -> list[TaskExample]:
        return read_examples(self.path(spec_file, claim))

    def add(self, spec_file: str, claim: str, example: TaskExample) -> None:
        """Merge ``example`` into the stored list: read, merge and replace under the file's lock."""
        path = self.path(spec_file, claim)
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            known = read_examples(path)
            if example in known:
                return
            write_text(path, json.dumps([asdict(e) for e in [*known, example]], indent=2, sort_keys=True) + "\n")
