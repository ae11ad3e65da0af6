"""Rewrite .circ files in canonical form (or, with --check, only report which would change).

Every file is parsed and formatted first; each one that would change must be writable (the file and its
folder) before any is rewritten, and each is replaced atomically, so a spec is never left half written.

Exit 0 when nothing needed changing (or files were rewritten), 1 with --check when some file would
change, 2 when a file does not parse (it is left untouched) or cannot be written.
"""

from __future__ import annotations

import argparse
import sys

from .outputs import check_output_file, save_output
from .paths import circ_files
from .reporting import Reporter

NAME, HELP = "fmt", "format .circ files canonically"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")


def run(args: argparse.Namespace) -> int:
    from ..lang.fmt import format_spec
    from ..lang.parser import parse_spec_or_library

    say = Reporter(args)  # file lines and the summary on stdout; parse errors on stderr
    changed, broken = [], 0
    files = circ_files(args.paths)
    for path in files:
        parsed, _ = parse_spec_or_library(path)
        if not parsed.ok:
            sys.stderr.write(parsed.render())
            broken += 1
            continue
        formatted = format_spec(parsed.spec)
        if formatted != path.read_text(encoding="utf-8"):
            changed.append((path, formatted))
    failed = []
    if not args.check:
        for path, _ in changed:  # all checked before any is written: a read-only one stops the run untouched
            check_output_file(path)
        failed = [path for path, text in changed if not save_output(path, text, f"the formatted {path.name}")]
    verb = "would reformat" if args.check else "reformatted"
    for path, _ in changed:
        if path not in failed:
            say.result(f"{verb} {path}", highlight=False, markup=False, soft_wrap=True)
    unchanged = len(files) - len(changed) - broken
    summary = f"{len(changed) - len(failed)} {'would be reformatted' if args.check else 'reformatted'}, {unchanged} unchanged"
    say.summary(summary + (f", {broken} with errors" if broken else "") + (f", {len(failed)} not written" if failed else ""),
                highlight=False, markup=False, soft_wrap=True)
    if broken or failed:
        return 2
    return 1 if args.check and changed else 0
