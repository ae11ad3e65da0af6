"""Tasks from the user's own project, without packaging it: ``[tool.circuitspec] tasks`` in pyproject.toml.

A researcher's tasks usually live next to their specs, in a module of their repository that nobody
installs. So the CLI looks for the nearest ``pyproject.toml`` above a spec (and above the working
directory) and imports the modules its ``[tool.circuitspec]`` table lists, with that project's folder
first on ``sys.path``::

    [tool.circuitspec]
    tasks = ["my_tasks"]          # modules; each registers its tasks on import, or defines TASKS
    seed = 0                      # defaults for the command line (circuitspec.commands.settings)

A listed module registers its tasks with :func:`~.registry.register_task` when imported, or defines a
list ``TASKS`` of :class:`~.base.Task` (registered for it). ``--tasks-module NAME`` imports one more the
same way from the working directory. This imports the user's own code, as pytest imports a
``conftest.py``; the ``.circ`` language itself still never executes anything.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import tomllib
from pathlib import Path

from ..errors import UsageError
from .base import Task
from .registry import DuplicateTaskError, _tasks, register_task

#: pyproject.toml files already read (their resolved paths), so each project's modules load once.
_seen_projects: set[Path] = set()
_imported: set[str] = set()


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` (a folder, or a file's folder) or any folder above it."""
    folder = start if start.is_dir() else start.parent
    for candidate in [folder.resolve(), *folder.resolve().parents]:
        path = candidate / "pyproject.toml"
        if path.is_file():
            return path
    return None


#: keys of [tool.circuitspec]: ``tasks`` here; the command-line defaults are checked by
#: circuitspec.commands.settings, which reads the same table.
KNOWN_KEYS = ("device", "jobs", "samples", "seed", "tasks", "threads")


def read_project_table(pyproject: Path) -> dict:
    """The ``[tool.circuitspec]`` table of ``pyproject`` (empty if it has none); an unreadable file, a table
    that is not one, or an unknown key is a UsageError naming the file."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{pyproject}: cannot read it for [tool.circuitspec]: {error}") from None
    table = data.get("tool", {}).get("circuitspec", {}) if isinstance(data.get("tool"), dict) else {}
    if not isinstance(table, dict):
        raise UsageError(f"{pyproject}: [tool.circuitspec] must be a table")
    unknown = sorted(set(table) - set(KNOWN_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], KNOWN_KEYS, n=1)
        raise UsageError(f"{pyproject}: unknown key{'s' if len(unknown) > 1 else ''} in [tool.circuitspec]: {', '.join(unknown)}",
                         hint=(f"did you mean {close[0]!r}? " if close else "") + f"known: {', '.join(KNOWN_KEYS)}")
    return table


def load_project_tasks(start: Path) -> list[str]:
    """Import the task modules the nearest pyproject.toml above ``start`` lists (once per project);
    returns the module names imported now. A malformed table or a module that fails is a UsageError."""
    pyproject = find_pyproject(start)
    if pyproject is None or pyproject in _seen_projects:
        return []
    _seen_projects.add(pyproject)
    table = read_project_table(pyproject)
    modules = table.get("tasks", [])
    if isinstance(modules, str) or not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise UsageError(f"{pyproject}: [tool.circuitspec] tasks must be a list of module names",
                         hint='e.g. tasks = ["my_tasks"] for a my_tasks.py next to pyproject.toml')
    return [name for name in modules if import_tasks_module(name, pyproject.parent, f"{pyproject} [tool.circuitspec]")]


def import_tasks_module(name: str, folder: Path, origin: str) -> bool:
    """Import ``name`` with ``folder`` first on ``sys.path`` and register its ``TASKS`` if it has them;
    False when it was imported before."""
    if name in _imported:
        return False
    root = str(folder.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise UsageError(f"{origin}: no module named {name!r} (looked in {root} and the installed packages)",
                             hint=f"a tasks module is a {name.replace('.', '/')}.py file next to pyproject.toml, "
                                  "or an installed module") from None
        raise UsageError(f"{origin}: importing {name!r} failed: {error}") from None
    except Exception as error:  # the user's module raised: name it, with what it raised
        raise UsageError(f"{origin}: importing {name!r} failed: {type(error).__name__}: {error}") from None
    _imported.add(name)
    listed = getattr(module, "TASKS", None)
    if listed is not None:
        if not isinstance(listed, (list, tuple)) or not all(isinstance(t, Task) for t in listed):
            raise UsageError(f"{origin}: {name}.TASKS must be a list of Task objects")
        for task in listed:
            if _tasks.get(task.name) is not task:
                try:
                    register_task(task)
                except DuplicateTaskError as error:
                    raise UsageError(f"{origin}: {name}.TASKS: {error}", hint="rename the task") from None
    return True
