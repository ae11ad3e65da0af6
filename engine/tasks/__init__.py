"""Binary next-token tasks on Python snippets, and the registry that finds them by name.

Importing this package registers the built-in tasks (see :mod:`.suite`).
"""

from .base import RandomSampler, Sampler, Task, TaskExample
from .registry import (
    DuplicateTaskError,
    TaskEntryPointError,
    UnknownTaskError,
    all_tasks,
    get_task,
    register_task,
    task_names,
    unregister_task,
)
from .suite import BUILTIN_TASKS

__all__ = [
    "BUILTIN_TASKS",
    "DuplicateTaskError",
    "RandomSampler",
    "Sampler",
    "Task",
    "TaskEntryPointError",
    "TaskExample",
    "UnknownTaskError",
    "all_tasks",
    "get_task",
    "register_task",
    "task_names",
    "unregister_task",
]
