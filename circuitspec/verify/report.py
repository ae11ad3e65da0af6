"""Verdicts for people (a rich table) and for machines (JSON with a run manifest, JUnit XML)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Sequence
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .judge import ClaimResult

STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def print_table(results: Sequence[ClaimResult], console: Console) -> None:
    table = Table(title="claims", show_lines=True)
    for col, justify in (("claim", "left"), ("verdict", "left"), ("statistic [interval]", "right"),
                         ("threshold", "right"), ("n", "right"), ("spread q10 / q50 / q90", "right")):
        table.add_column(col, justify=justify)
    for r in results:
        interval = "" if not r.ci else f" [{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]"
        threshold = "—" if r.threshold is None else f"{r.op} {_fmt(r.threshold)}"
        spread = " / ".join(_fmt(r.spread.get(q)) for q in ("q10", "q50", "q90")) if r.spread else "—"
        claim = f"{Path(r.file).name}:{r.line} [bold]{escape(_title(r))}[/]\n[dim]{escape(r.ablation)}, {r.metric}[/]"
        table.add_row(claim, f"[{STYLE[r.verdict]}]{r.verdict}[/]", _fmt(r.statistic) + interval, threshold, str(r.n), spread)
    console.print(table)
    for r in results:
        if r.note or r.counterexample:
            console.print(f"[{STYLE[r.verdict]}]{r.verdict}[/] " + escape(f"{Path(r.file).name}:{r.line} {_title(r)}: {r.note}"),
                          highlight=False)
            if r.counterexample:
                console.print(escape(f"    counterexample: {describe_counterexample(r.counterexample)}"), highlight=False)


def describe_counterexample(found: dict[str, Any]) -> str:
    """An input (per-input claims) or an ablation choice with its statistic (aggregate claims under attack)."""
    if "input" in found:
        return repr(found["input"])
    statistic = next((f"{k} = {v:.3g}" for k, v in found.items() if k in ("faithfulness", "drop")), "")
    return f"{found.get('ablation choice', '?')}" + (f" ({statistic})" if statistic else "")


def _title(r: ClaimResult) -> str:
    return r.kind if r.name.startswith("line ") else f"{r.name} ({r.kind})"


def summary(results: Sequence[ClaimResult]) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "inconclusive")}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def json_report(results: Sequence[ClaimResult], manifest: dict[str, Any]) -> str:
    """The ``--json`` file: the run manifest and every claim's result (the caller writes it atomically)."""
    return json.dumps({"manifest": manifest, "claims": [r.to_json() for r in results]}, indent=2, sort_keys=True) + "\n"


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
