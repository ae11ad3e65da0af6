"""List the shipped models: shape, parameters, non-zero weights and size on disk."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from .defaults import DEFAULT_MODEL
from .reporting import Reporter

NAME, HELP = "models", "list the shipped models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..engine.zoo import model_info, shipped_names

    infos = [model_info(n) for n in shipped_names()]
    if args.json:
        print(json.dumps([{"name": i.name, "default": i.name == DEFAULT_MODEL, "path": str(i.path), "description": i.description,
                           "shape": i.shape, "parameters": i.parameters, "nonzero": i.nonzero, "size_bytes": i.size_bytes}
                          for i in infos], indent=2))
        return 0
    say = Reporter(args)
    if say.quiet:
        say.summary(f"{len(infos)} shipped models: {', '.join(i.name + (' (default)' if i.name == DEFAULT_MODEL else '') for i in infos)}",
                    highlight=False, soft_wrap=True)
        return 0
    table = Table(title="shipped models")
    for col in ("name", "shape", "parameters", "non-zero", "on disk"):
        table.add_column(col, no_wrap=col == "name")
    for i in infos:
        name = i.name + (" (default)" if i.name == DEFAULT_MODEL else "")
        table.add_row(name, i.shape, f"{i.parameters:,}", f"{i.nonzero:,} ({i.nonzero / i.parameters:.1%})",
                      f"{i.size_bytes / 1e6:.2f} MB")
    say.result(table)
    for i in infos:
        say.result(f"[bold]{i.name}[/]: {i.description}", highlight=False)
    return 0
