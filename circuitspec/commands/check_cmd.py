"""Parse and resolve specs against their models (weights loaded, no forward pass); report diagnostics.

Exit 0 when every file is clean, 2 when any has an error, 3 when a model cannot be loaded (as in every command).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from ..engine.tasks.project import load_project_tasks
from .paths import circ_files
from .reporting import Reporter

if TYPE_CHECKING:
    from ..lang.diagnostics import Diagnostic
    from ..lang.resolve import ResolvedSpec

NAME, HELP = "check", "parse and resolve .circ specs (no forward passes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--json", action="store_true", help="print diagnostics as JSON objects")


def check_file(path: Path) -> tuple[ResolvedSpec | None, list[Diagnostic], dict[str, str]]:
    """Parse then resolve one file (a library file is only parsed: it has no model to resolve against
    until a spec includes it); the sources map file names to text for rendering."""
    from ..lang.parser import parse_spec_or_library
    from ..lang.resolve import resolve

    parsed, is_library = parse_spec_or_library(path)
    if not parsed.ok or is_library:
        return None, parsed.diagnostics, parsed.sources
    load_project_tasks(path)  # [tool.circuitspec] tasks of the nearest pyproject.toml above the spec
    resolved, diagnostics = resolve(parsed.spec, str(path))
    return resolved, parsed.diagnostics + diagnostics, parsed.sources


def _node_count(resolved: ResolvedSpec) -> str:
    """How many nodes the circuit keeps, and how many of them the spec did not name itself: residual
    channels on the paths of its declared edges, which join the circuit so the edges can carry anything."""
    added = len(resolved.added)
    if not added:
        return f"{len(resolved.nodes)} nodes"
    return (f"{len(resolved.nodes)} nodes ({len(resolved.nodes) - added} declared, {added} residual channels added on the "
            f"paths of declared edges)")


def _edge_count(resolved: ResolvedSpec) -> str:
    """The circuit's edges (non-zero weights between kept nodes that it keeps) and, for an edge-level circuit
    (`circuit edges`), how many non-zero weights between its nodes, or from its input and into the logits,
    it ablates because no edge states them."""
    from ..engine.discover import circuit_edge_count

    mask, model = resolved.mask, resolved.context.model
    kept = f"{circuit_edge_count(mask, model)} edges"
    if not resolved.edge_level:
        return kept
    between = mask.induced(model).edges
    ablated = sum(int((t & ~mask.edges[p]).sum()) for p, t in between.items())
    return f"{kept} (edge-level: {ablated} unstated weight{'s' * (ablated != 1)} between its nodes, input and logits ablated)"


def _claim_text(claim) -> str:
    """The claim as the formatter writes it, with the settings it inherited from the header (-v)."""
    from ..lang.fmt import format_statement

    inherited = f" (inherits {', '.join(claim.inherited)})" if claim.inherited else ""
    return format_statement(claim.claim) + inherited


def diagnostic_json(d: Diagnostic) -> dict:
    return {"file": d.file, "line": d.line, "col": d.col, "end": {"line": d.end_line, "col": d.end_col},
            "severity": d.severity, "code": d.code, "message": d.message, "hint": d.hint}


def run(args: argparse.Namespace) -> int:
    from ..lang.diagnostics import render_all

    files = circ_files(args.paths)
    all_diagnostics: list[Diagnostic] = []
    report = Reporter(args, stdout_taken=args.json)
    clean = 0
    for path in files:
        resolved, diagnostics, sources = check_file(path)
        all_diagnostics.extend(diagnostics)
        clean += not any(d.is_error for d in diagnostics)
        if args.json:
            continue
        if diagnostics:
            sys.stderr.write(render_all(diagnostics, sources))  # plain text: wrapping would break the carets
        elif resolved is None:
            report.result(f"[green]ok[/] {escape(str(path))}: library (checked against a model where a spec includes it)",
                          soft_wrap=True)
        else:
            report.result(f"[green]ok[/] {escape(str(path))}: {_node_count(resolved)}, {_edge_count(resolved)}, "
                          f"{len(resolved.claims)} claims on {resolved.spec.model} / {resolved.task.name}", soft_wrap=True)
            for claim in resolved.claims:
                report.detail(escape(f"  {path.name}:{claim.claim.span.line} {claim.kind}: {_claim_text(claim)}"), soft_wrap=True)
    if args.json:
        json.dump([diagnostic_json(d) for d in all_diagnostics], sys.stdout, indent=2)
        print()
    else:
        report.summary(f"{len(files)} file{'s' if len(files) != 1 else ''} checked: {clean} clean, "
                       f"{len(files) - clean} with errors", soft_wrap=True)
    from .specs import MODEL_ERROR_CODES  # specs imports this module, so not at the top

    codes = {d.code for d in all_diagnostics if d.is_error}
    return 3 if codes & MODEL_ERROR_CODES else 2 if codes else 0
