"""Verdicts for people (a rich table) and for machines (JSON with a run manifest, JUnit XML, GitHub Actions
annotations)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Sequence
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..schemas import header
from .judge import ClaimResult

STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
COMPACT_WIDTH = 110  # narrower consoles get a block of lines per claim (the table needs about this many columns)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def print_table(results: Sequence[ClaimResult], console: Console, verbose: bool = False) -> None:
    """The claims table, then a line per claim with a note (every claim with ``verbose``). Below
    ``COMPACT_WIDTH`` columns (COLUMNS=80 in a CI log) a table would fold or cut the claims' ``file:line``,
    so each claim gets a block of lines instead, its location whole at the start and the rest wrapped."""
    location = [f"{Path(r.file).name}:{r.line}" for r in results]
    if console.width < COMPACT_WIDTH:
        for r, where in zip(results, location):
            console.print(f"[{STYLE[r.verdict]}]{r.verdict}[/] {escape(where)} [bold]{escape(_title(r))}[/]")
            console.print(escape(f"    {_figures(r)}; {r.ablation}, {r.metric}"))
    else:
        table = Table(title="claims", show_lines=True)
        for col, justify in (("claim", "left"), ("verdict", "left"), ("statistic [interval]", "right"),
                             ("threshold", "right"), ("n", "right"), ("spread q10 / q50 / q90", "right")):
            table.add_column(col, justify=justify)
        for r, where in zip(results, location):
            claim = f"{escape(where)} [bold]{escape(_title(r))}[/]\n[dim]{escape(r.ablation)}, {r.metric}[/]"
            table.add_row(claim, f"[{STYLE[r.verdict]}]{r.verdict}[/]", _fmt(r.statistic) + _interval(r), _threshold(r),
                          str(r.n), _spread(r))
        console.print(table)
    for r, where in zip(results, location):
        if r.note or r.counterexample or verbose:
            console.print(f"[{STYLE[r.verdict]}]{r.verdict}[/] " + escape(f"{where} {_title(r)}: {r.note or 'no note'}"),
                          highlight=False)
            if verbose:
                inherited = f"; inherited from the spec: {', '.join(r.inherited)}" if r.inherited else ""
                console.print(escape(f"    {r.text} (confidence {r.confidence:g}, seed {r.seed}{inherited})"), highlight=False)
            if r.counterexample:
                console.print(escape(f"    counterexample: {describe_counterexample(r.counterexample)}"), highlight=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(file: str, line: int, title: str, message: str, level: str = "error") -> str:
    """One GitHub Actions workflow command (``::error file=F,line=L,title=T::message``) on one line: the
    job's log then marks the claim's line in the pull request's diff."""
    return (f"::{level} file={_escape_property(file)},line={line},title={_escape_property(title)}::"
            f"{_escape_data(message)}\n")


def github_annotations(results: Sequence[ClaimResult]) -> list[str]:
    """``--output-format github``: one error annotation per claim that failed or is inconclusive."""
    lines = []
    for r in results:
        if r.verdict == "pass":
            continue
        measured = "" if r.statistic is None else f"; statistic {_fmt(r.statistic)}"
        measured += f" [{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]" if r.ci else ""
        measured += "" if r.threshold is None else f", threshold {r.op} {_fmt(r.threshold)}"
        note = f"; {r.note}" if r.note else ""
        example = f"; counterexample: {describe_counterexample(r.counterexample)}" if r.counterexample else ""
        lines.append(github_annotation(r.file, r.line, f"{r.verdict}: {_title(r)}",
                                       f"{r.text} ({r.verdict}{measured}, n {r.n}){note}{example}"))
    return lines


def _interval(r: ClaimResult) -> str:
    return "" if not r.ci else f" [{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]"


def _threshold(r: ClaimResult) -> str:
    return "—" if r.threshold is None else f"{r.op} {_fmt(r.threshold)}"


def _spread(r: ClaimResult) -> str:
    return " / ".join(_fmt(r.spread.get(q)) for q in ("q10", "q50", "q90")) if r.spread else "—"


def _figures(r: ClaimResult) -> str:
    """The table's figures as one line: statistic [interval], threshold, n and spread."""
    return f"{_fmt(r.statistic)}{_interval(r)} (threshold {_threshold(r)}), n {r.n}, spread q10 / q50 / q90 {_spread(r)}"


def describe_counterexample(found: dict[str, Any]) -> str:
    """An input (per-input claims) or an ablation choice with its statistic (aggregate claims under attack)."""
    if "input" in found:
        return repr(found["input"])
    statistic = next((f"{k} = {v:.3g}" for k, v in found.items() if k in ("faithfulness", "drop")), "")
    return f"{found.get('ablation choice', '?')}" + (f" ({statistic})" if statistic else "")


def _title(r: ClaimResult) -> str:
    return r.kind if r.name.startswith("line ") else f"{r.name} ({r.kind})"


def falsify_annotations(results) -> list[str]:
    """``falsify --output-format github``: one error annotation per claim falsified, or left inconclusive
    (no input met its conditions); ``results`` are FalsifyResult."""
    lines = []
    for r in results:
        if r.verdict == "survived":
            continue
        title = r.kind if r.name.startswith("line ") else f"{r.name} ({r.kind})"
        example = f"; counterexample: {describe_counterexample(r.counterexample)}" if r.counterexample else ""
        note = f"; {r.note}" if r.note else ""
        lines.append(github_annotation(r.file, r.line, f"{r.verdict}: {title}",
                                       f"{r.verdict} after {r.tried} inputs tried{note}{example}"))
    return lines


def summary(results: Sequence[ClaimResult]) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "inconclusive")}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def json_report(results: Sequence[ClaimResult], manifest: dict[str, Any]) -> str:
    """The ``--json`` file: the run manifest and every claim's result (the caller writes it atomically), under
    the schema's ``$id`` and the format version (circuitspec/schemas/verify.schema.json)."""
    report = {**header("verify"), "manifest": manifest, "claims": [r.to_json() for r in results]}
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def junit_report(results: Sequence[ClaimResult]) -> str:
    """JUnit XML: one <testsuite> per spec, one <testcase> per claim; fail and inconclusive are failures in CI."""
    suites = ET.Element("testsuites", name="circuitspec")
    by_spec: dict[str, list[ClaimResult]] = {}
    for r in results:
        by_spec.setdefault(r.file, []).append(r)
    for file, items in by_spec.items():
        failures = sum(r.verdict != "pass" for r in items)
        suite = ET.SubElement(suites, "testsuite", name=items[0].spec or file, tests=str(len(items)),
                              failures=str(failures), errors="0", file=file)
        for r in items:
            case = ET.SubElement(suite, "testcase", classname=items[0].spec or file, name=f"{r.name} ({r.kind})",
                                 file=file, line=str(r.line))
            if r.verdict != "pass":
                failure = ET.SubElement(case, "failure", type=r.verdict,
                                        message=f"{r.verdict}: {r.text}" + (f" — {r.note}" if r.note else ""))
                failure.text = json.dumps(r.to_json(), indent=2, sort_keys=True)
    ET.indent(suites)
    return (ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n").decode("utf-8")


def manifest(specs: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    import circuitspec
    import numpy
    import torch
    return {"circuitspec": circuitspec.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "settings": settings, "specs": list(specs)}
