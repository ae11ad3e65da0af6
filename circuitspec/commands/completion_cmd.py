"""Print a shell completion script for circuitspec (bash, zsh or tcsh), generated from the parser itself.

    circuitspec completion bash > ~/.local/share/bash-completion/completions/circuitspec
    circuitspec completion zsh > "${fpath[1]}/_circuitspec"

Commands, options and their fixed choices complete; spec, model, config and output arguments complete as
file or directory paths. The script is made by shtab from the same argparse parser the command line uses,
so it never lists an option that does not exist.
"""

from __future__ import annotations

import argparse

NAME, HELP = "completion", "print a shell completion script (bash, zsh, tcsh)"
SHELLS = ("bash", "zsh", "tcsh")

# Argument destinations that name files or folders: completed as paths by the shell.
_FILE_ARGUMENTS = {"paths", "path", "old", "new", "config", "json", "junit", "output", "svg"}
_DIRECTORY_ARGUMENTS = {"out", "database", "corpus_root", "source"}
_PATH_OR_NAME_ARGUMENTS = {"model", "models"}  # a shipped name or a checkpoint directory


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def script(shell: str) -> str:
    """The completion script for ``shell``."""
    import shtab

    from ..cli import build_parser

    parser = build_parser()
    for action in _all_actions(parser):
        if action.nargs == 0 or (action.choices is not None and not isinstance(action, argparse._SubParsersAction)):
            continue  # flags take no value; shtab completes fixed choices itself
        if action.dest in _FILE_ARGUMENTS:
            action.complete = shtab.FILE
        elif action.dest in _DIRECTORY_ARGUMENTS or action.dest in _PATH_OR_NAME_ARGUMENTS:
            action.complete = shtab.DIRECTORY
    return shtab.complete(parser, shell=shell)


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)


def run(args: argparse.Namespace) -> int:
    print(script(args.shell))
    return 0
