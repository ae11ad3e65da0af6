"""What verify, falsify, prove and show share: resolving the specs a user named (imported when a command runs)."""

from __future__ import annotations

import sys

from ..lang.diagnostics import render_all
from ..lang.parser import parse_spec_or_library
from ..lang.resolve import ResolvedSpec
from .check_cmd import check_file
from .paths import circ_files

MODEL_ERROR_CODES = {"E512", "E513"}  # a checkpoint that cannot be trusted, or lacks the means a spec needs: exit 3, as `means --check`


def resolve_specs(paths: list[str]) -> tuple[list[ResolvedSpec], int]:
    """The resolved specs under ``paths`` (include-only libraries skipped: they are checked through the
    specs that include it), diagnostics printed, and the exit code they imply (0, 2 or 3)."""
    resolved_specs, exit_code = [], 0
    for path in circ_files(paths):
        if parse_spec_or_library(path)[1]:
            continue
        resolved, diagnostics, sources = check_file(path)
        if diagnostics:
            sys.stderr.write(render_all(diagnostics, sources))
        if resolved is None:
            exit_code = max(exit_code, 3 if {d.code for d in diagnostics} & MODEL_ERROR_CODES else 2)
            continue
        resolved_specs.append(resolved)
    return resolved_specs, exit_code
