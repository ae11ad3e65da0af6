"""The one place tasks are looked up by name.

Built-in tasks are registered on import. Users add their own without editing the package, either by
calling :func:`register_task` or by declaring an entry point in the ``circuitspec.tasks`` group that
loads to a :class:`Task` or a list of them; entry points are loaded on the first lookup, so merely
importing circuitspec never imports third-party code.
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Iterable

from .base import Task
from .suite import BUILTIN_TASKS

ENTRY_POINT_GROUP = "circuitspec.tasks"

_tasks: dict[str, Task] = {}
_loaded_entry_points: set[tuple[str, str]] = set()
_entry_points_done = False


class UnknownTaskError(ValueError):
    """No task has this name; ``suggestions`` lists close names (possibly empty)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = list(known)
        self.name = name
        self.suggestions = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        if self.suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        else:
            hint = "known tasks: " + (", ".join(known) or "none")
        super().__init__(f"unknown task {name!r}; {hint}")


class DuplicateTaskError(ValueError):
    """A task of this name is already registered (pass ``replace=True`` to override it)."""


class TaskEntryPointError(RuntimeError):
    """An entry point of the ``circuitspec.tasks`` group could not be loaded into tasks."""


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` findable by name; returns it so this can be used as a one-liner."""
    if not isinstance(task, Task):
        raise TypeError(f"register_task expects a Task, got {type(task).__name__}")
    if not task.name:
        raise ValueError("a task needs a non-empty name")
    if task.name in _tasks and not replace:
        raise DuplicateTaskError(f"a task named {task.name!r} is already registered; pass replace=True to override it")
    _tasks[task.name] = task
    return task


def unregister_task(name: str) -> Task:
    """Remove a registered task (mainly for tests and interactive sessions)."""
    _load_entry_points()
    if name not in _tasks:
        raise UnknownTaskError(name, _tasks)
    return _tasks.pop(name)


def get_task(name: str) -> Task:
    _load_entry_points()
    try:
        return _tasks[name]
    except KeyError:
        raise UnknownTaskError(name, _tasks) from None


def all_tasks() -> list[Task]:
    """Built-in tasks first, in definition order, then others in registration order."""
    _load_entry_points()
    return list(_tasks.values())


def task_names() -> list[str]:
    return [task.name for task in all_tasks()]


def _load_entry_points() -> None:
    """Register every task the installed distributions declare, once.

    A broken entry point fails every lookup with an error naming it, rather than silently hiding
    the user's task; entry points that did load are not registered twice on the next attempt.
    """
    global _entry_points_done
    if _entry_points_done:
        return
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (entry_point.name, entry_point.value)
        if key in _loaded_entry_points:
            continue
        for task in _tasks_from_entry_point(entry_point):
            if _tasks.get(task.name) is task:
                continue
            try:
                register_task(task)
            except DuplicateTaskError as error:
                raise TaskEntryPointError(f"{_describe(entry_point)}: {error}") from error
        _loaded_entry_points.add(key)
    _entry_points_done = True


def _tasks_from_entry_point(entry_point: metadata.EntryPoint) -> list[Task]:
    try:
        loaded = entry_point.load()
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        raise TaskEntryPointError(f"could not load {_describe(entry_point)}: {reason}") from error
    tasks = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    bad = [item for item in tasks if not isinstance(item, Task)]
    if bad:
        raise TaskEntryPointError(
            f"{_describe(entry_point)} must load to a Task or a list of Tasks, got {type(bad[0]).__name__}"
        )
    return tasks


def _describe(entry_point: metadata.EntryPoint) -> str:
    return f"task entry point {entry_point.name!r} ({entry_point.value}) in group {ENTRY_POINT_GROUP!r}"


for _task in BUILTIN_TASKS:
    register_task(_task)
