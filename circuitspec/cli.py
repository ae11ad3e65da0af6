"""Command-line entry point: argument parsing, dispatch, and the exit-code contract.

Exit codes (DESIGN.md): 0 success, 1 a claim failed or is inconclusive, 2 bad spec or usage,
3 bad model or a failed internal check. Known errors print a message and a hint, never a traceback.

Reading the command line imports no torch (the command modules import their heavy parts inside
``run``), so ``--help`` and usage errors answer at once; tests/test_output_conventions.py checks it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .commands import (check_cmd, completion_cmd, convert_cmd, diff_cmd, discover_cmd, eval_cmd, export_cmd, falsify_cmd, fmt_cmd, import_cmd, means_cmd, models_cmd,
                       prove_cmd, check_proof_cmd, scan_cmd, schema_cmd, show_cmd, tasks_cmd, train_cmd, verify_cmd)
from .commands.argtypes import positive_int
from .commands.reporting import add_verbosity_arguments
from .commands.settings import MAX_THREADS, apply_project_defaults
from .engine.errors import CircuitspecError
from .engine.memory import keep_freed_memory
from .engine.tasks.project import import_tasks_module, load_project_tasks
from .engine.tasks import UnknownTaskError

COMMANDS = (verify_cmd, falsify_cmd, prove_cmd, check_proof_cmd, check_cmd, diff_cmd, export_cmd, import_cmd, discover_cmd, scan_cmd, show_cmd, fmt_cmd, train_cmd, means_cmd,
            eval_cmd, tasks_cmd, models_cmd, convert_cmd, schema_cmd, completion_cmd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors, as the contract wants
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes, after its name like its own."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=positive_int(MAX_THREADS), metavar="N",
                        help="CPU threads torch may use (default: [tool.circuitspec] threads, else torch's, one per core; see the "
                             "README on loaded machines)")
    common.add_argument("--tasks-module", action="append", default=[], metavar="MODULE",
                        help="import this module (from the working directory) for its tasks: it calls register_task "
                             "or defines TASKS; repeatable. [tool.circuitspec] tasks in pyproject.toml does the same")
    add_verbosity_arguments(common)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="circuitspec", description="Declarative circuit specifications for weight-sparse transformers.")
    parser.add_argument("--version", action="version", version=f"circuitspec {__import__('circuitspec').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common_options()
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.__doc__, parents=[common])
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    err = Console(stderr=True)
    keep_freed_memory()  # fewer page faults in every forward pass (engine/memory.py); no-op off glibc
    try:
        apply_project_defaults(args, Path.cwd())  # [tool.circuitspec] seed, samples, device, threads where no flag says
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        for module in args.tasks_module:
            import_tasks_module(module, Path.cwd(), "--tasks-module")
        load_project_tasks(Path.cwd())  # [tool.circuitspec] tasks above the working directory (specs: above each spec)
        return int(args.run(args) or 0)
    except CircuitspecError as e:
        err.print("[bold red]error:[/] " + escape(e.message), highlight=False, soft_wrap=True)  # one line, however long
        if e.hint:
            err.print("  [cyan]hint:[/] " + escape(e.hint), highlight=False, soft_wrap=True)
        return e.exit_code
    except UnknownTaskError as e:
        err.print("[bold red]error:[/] " + escape(str(e)), highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `circuitspec check --json x | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def entry() -> None:
    """The ``circuitspec`` command (and ``python -m circuitspec``): :func:`main`, then :func:`leave`."""
    leave(main())


def leave(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown, once every output is written.

    A finished command has nothing left to do, but tearing the interpreter down still collected its
    garbage: after `verify specs/` printed its summary the process took another 1.2 s to end (task
    inputs, tensors and the parsed specs, freed one object at a time). So the streams are flushed and
    the process ends at once. Output files are closed by then (written whole by :mod:`~.engine.atomic`,
    or with ``Path.write_text``; workers have been waited for). Under coverage, whose data is saved at
    exit, the ordinary exit runs instead."""
    if "coverage" in sys.modules:
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (broken pipe) or a stream closed already
            pass
    os._exit(code)
