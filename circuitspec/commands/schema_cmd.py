"""Print the JSON Schema (draft 2020-12) of a command's ``--json`` output: the contract a CI script can
validate a report against, e.g. ``check-jsonschema --schemafile "$(circuitspec schema verify --path)" report.json``.

The schemas ship with the package (``circuitspec/schemas/COMMAND.schema.json``); ``--path`` prints where.
"""

from __future__ import annotations

import argparse
import sys

from ..schemas import COMMANDS

NAME, HELP = "schema", "print the JSON Schema of a command's --json output"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", choices=COMMANDS, help="the command whose --json output it describes")
    p.add_argument("--path", action="store_true", help="print the schema file's path instead of its text")


def run(args: argparse.Namespace) -> int:
    from importlib import resources

    from .. import schemas

    if args.path:
        print(resources.files(schemas).joinpath(f"{args.command}.schema.json"))
    else:
        sys.stdout.write(schemas.schema_text(args.command))
    return 0
