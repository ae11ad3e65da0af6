"""List the registered tasks with their answers, features and named positions (and, with -v or in JSON, the
finite domains `prove` proves claims over)."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from ..engine.tasks import all_tasks
from .argtypes import non_negative_int
from .reporting import Reporter

MAX_EXAMPLES = 10_000  # per task: more would only flood the terminal
NAME, HELP = "tasks", "list the tasks specs can name"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--examples", type=non_negative_int(MAX_EXAMPLES), default=0, metavar="N", help="also show N example prefixes per task")


def run(args: argparse.Namespace) -> int:
    tasks = all_tasks()
    if args.json:
        data = {t.name: {"description": t.description, "answers": t.answers, "features": dict(t.features),
                         "positions": dict(t.positions),
                         "domains": [d.to_json() for d in t.domains],
                         "examples": [_example(ex) for ex in t.sample(args.examples, "cli")]} for t in tasks}
        print(json.dumps(data, indent=2))
        return 0
    say = Reporter(args)
    if say.quiet:
        say.summary(f"{len(tasks)} tasks: {', '.join(t.name for t in tasks)}", highlight=False, soft_wrap=True)
        return 0
    table = Table(title=f"{len(tasks)} tasks", show_lines=True)
    columns = ("task", "answers", "features", "positions") + (("domains",) if say.verbose else ())
    for col in columns:
        table.add_column(col, overflow="fold")
    for t in tasks:
        name = f"[bold]{t.name}[/]\n{t.description}"
        for ex in t.sample(args.examples, "cli"):
            name += f"\n[dim]{ex.prefix!r} -> {ex.correct!r}[/]"
        row = [name, t.answers, "\n".join(t.features), "\n".join(t.positions)]
        if say.verbose:  # the finite domains `prove` proves claims over
            row.append("\n".join(escape(f"{d.name}: {d.pattern()} ({d.size():,})") for d in t.domains) or "-")
        table.add_row(*row)
    say.result(table)
    return 0


def _example(ex) -> dict:
    return {"prefix": ex.prefix, "correct": ex.correct, "wrong": ex.wrong, "features": dict(ex.features),
            "positions": dict(ex.positions)}
