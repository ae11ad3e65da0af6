"""Rewrite .circ files in canonical form (or, with --check, only report which would change).

Exit 0 when nothing needed changing (or files were rewritten), 1 with --check when some file would
change, 2 when a file does not parse (it is left untouched).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ..lang.fmt import format_spec
from ..lang.parser import parse_spec_or_library
from .paths import circ_files

NAME, HELP = "fmt", "format .circ files canonically"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, highlight=False)
    changed, broken = [], 0
    files = circ_files(args.paths)
    for path in files:
        parsed, _ = parse_spec_or_library(path)
        if not parsed.ok:
            sys.stderr.write(parsed.render())
            broken += 1
            continue
        text = path.read_text(encoding="utf-8")
        formatted = format_spec(parsed.spec)
        if formatted != text:
            changed.append(path)
            if not args.check:
                path.write_text(formatted, encoding="utf-8")
    verb = "would reformat" if args.check else "reformatted"
    for path in changed:
        console.print(f"{verb} {path}")
    unchanged = len(files) - len(changed) - broken
    summary = f"{len(changed)} {'would be reformatted' if args.check else 'reformatted'}, {unchanged} unchanged"
    console.print(summary + (f", {broken} with errors" if broken else ""))
    if broken:
        return 2
    return 1 if args.check and changed else 0
